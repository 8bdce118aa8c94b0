"""The console's words: one catalogue, Chinese (zh-CN) first, English second.

The Chinese strings use the service centre's own words (电费, 违约金, 欠费, 停电, 复电,
服务承诺, 差错/障碍/事故, 对账, 挂账); the English ones the glossary of docs/architecture.md.
A key missing from the catalogue is an error at render time (tests/console render every page
in both languages), never a silently English page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from paygate.money import Money, minor_units_exponent

__all__ = ["CATALOGUE", "LANGUAGES", "Translator"]

LANGUAGES: Final = ("zh-CN", "en")
"""The languages the console speaks, the default first."""

CATALOGUE: Final[dict[str, tuple[str, str]]] = {
    # frame
    "app.title": ("供电营业厅 · 一口对外", "Service centre console"),
    "nav.search": ("户号查询", "Accounts"),
    "nav.finance": ("对账与挂账", "Finance"),
    "nav.promise": ("服务承诺", "Service promise"),
    "nav.audit": ("操作记录", "Audit trail"),
    "nav.sign_out": ("退出", "Sign out"),
    "nav.language": ("English", "中文"),
    "role.clerk": ("营业员", "clerk"),
    "role.finance": ("财务", "finance"),
    "role.supervisor": ("班长", "supervisor"),
    "role.admin": ("管理员", "admin"),
    # sign-in
    "signin.title": ("员工登录", "Staff sign-in"),
    "signin.username": ("用户名", "User name"),
    "signin.password": ("密码", "Password"),
    "signin.submit": ("登录", "Sign in"),
    "signin.refused": (
        "用户名或密码不正确，或账号已被锁定。连续失败多次后账号将锁定一段时间。",
        "The user name or password is not right, or the account is locked. Repeated failures "
        "lock the account for a while.",
    ),
    "signin.ended": ("您已退出。", "You are signed out."),
    "signin.with_provider": ("使用{provider}登录", "Sign in with {provider}"),
    "signin.or_password": ("或使用本地账号密码登录", "or with a local user name and password"),
    "signin.use_provider": (
        "您的岗位须通过统一身份认证登录，请使用上方按钮。",
        "Your role signs in through the identity provider: use the button above.",
    ),
    "signin.done": ("登录成功", "Signed in"),
    "signin.continue": ("继续", "Continue"),
    # sign-in through the identity provider: why it was refused
    "oidc.flow": (
        "登录请求已失效、已使用或并非由本浏览器发起，请重新登录。",
        "This sign-in request has expired, was already used, or was not started in this "
        "browser; please sign in again.",
    ),
    "oidc.denied": (
        "统一身份认证未同意此次登录。",
        "The identity provider did not grant this sign-in.",
    ),
    "oidc.provider": (
        "统一身份认证的应答无法使用，请稍后重试或联系系统管理员。",
        "The identity provider's answer could not be used; try again later or ask the "
        "administrator.",
    ),
    "oidc.unreachable": (
        "暂时无法连接统一身份认证，请稍后重试或使用本地账号登录。",
        "The identity provider cannot be reached now; try again later or sign in with a local "
        "account.",
    ),
    "oidc.token": (
        "统一身份认证的身份凭据未通过校验，未登录。",
        "The identity provider's token did not pass its checks; nobody is signed in.",
    ),
    "oidc.unknown_staff": (
        "此身份未登记为营业厅员工，请联系系统管理员开通。",
        "This identity is not registered as service-centre staff; ask the administrator to "
        "link it.",
    ),
    "oidc.disabled": (
        "此员工账号已停用。",
        "This staff account is disabled.",
    ),
    "signin.expired": ("会话已过期，请重新登录。", "Your session ended; please sign in again."),
    # refusals
    "refused.title": ("无法完成", "Not done"),
    "refused.role": ("您的岗位无权执行此操作。", "Your role may not do this."),
    "refused.csrf": (
        "表单已失效或来源不符，请刷新页面后重试。",
        "The form has expired or came from elsewhere; reload the page and try again.",
    ),
    "refused.not_found": ("未找到。", "Not found."),
    "back": ("返回", "Back"),
    # search
    "search.title": ("户号查询", "Find an account"),
    "search.label": (
        "户号、电能表通信地址或缴费流水号",
        "Account number, meter address or payment reference",
    ),
    "search.submit": ("查询", "Search"),
    "search.none": ("没有找到匹配的用户。", "No account matches."),
    "search.matched": ("匹配", "matched"),
    "matched.account_no": ("户号", "account number"),
    "matched.meter_address": ("表地址", "meter address"),
    "matched.payment_reference": ("缴费流水号", "payment reference"),
    # account
    "account.title": ("用户档案", "Account"),
    "account.no": ("户号", "Account number"),
    "account.name": ("户名", "Name"),
    "account.meter": ("电能表地址", "Meter address"),
    "account.category": ("用电类别", "Category"),
    "account.protected": ("重要用户（停电须协商）", "Protected (negotiated disconnection only)"),
    "account.supply": ("供电状态", "Supply"),
    "account.balance": ("账户余额（正数为欠费）", "Balance (positive: owes)"),
    "account.arrears": ("欠费（含违约金）", "Arrears (with late fees)"),
    "account.late_fee": ("违约金（截至今日）", "Late fee (to today)"),
    "account.credit": ("预存余额", "Credit"),
    "account.as_of": ("截至", "As of"),
    "supply.connected": ("正常供电", "connected"),
    "supply.disconnection_pending": ("待停电（已催费）", "disconnection pending"),
    "supply.disconnected": ("已停电", "disconnected"),
    "supply.reconnection_pending": ("待复电", "reconnection pending"),
    "supply.closed": ("已销户", "closed (account closed)"),
    "bills.title": ("电费账单", "Bills"),
    "bills.no": ("账单号", "Bill"),
    "bills.period": ("电费年月", "Period"),
    "bills.amount": ("电费", "Amount"),
    "bills.due": ("缴费截止日", "Due"),
    "bills.principal_due": ("未缴电费", "Principal due"),
    "bills.late_fee": ("违约金", "Late fee"),
    "bills.overdue": ("已逾期", "overdue"),
    "bills.none": ("没有未结清的电费账单。", "No unpaid bills."),
    "category.residential": ("居民生活用电", "residential"),
    "category.non_residential": ("非居民用电", "non-residential"),
    "payments.title": ("缴费记录", "Payments"),
    "payments.channel": ("渠道", "Channel"),
    "payments.reference": ("流水号", "Reference"),
    "payments.amount": ("金额", "Amount"),
    "payments.paid_at": ("缴费时间", "Paid at"),
    "payments.receipt": ("收据", "Receipt"),
    "payments.status": ("状态", "Status"),
    "payments.none": ("没有缴费记录。", "No payments."),
    "payment.posted": ("已入账", "posted"),
    "payment.reversed": ("已冲正", "reversed"),
    "channel.kiosk": ("自助缴费终端", "kiosk"),
    "channel.voucher": ("电费充值卡", "voucher"),
    "channel.pos": ("POS 刷卡", "POS"),
    "channel.bank_agent": ("银行代收", "bank agent"),
    "channel.wechat": ("微信支付", "WeChat Pay"),
    "channel.alipay": ("支付宝", "Alipay"),
    "channel.online": ("网上缴费", "online"),
    "orders.title": ("停复电工单", "Supply orders"),
    "orders.none": ("没有停复电工单。", "No supply orders."),
    "order.reconnect": ("复电", "reconnection"),
    "order.disconnect": ("停电", "disconnection"),
    "order.status.open": ("已派单", "open"),
    "order.status.dispatched": ("已下发", "dispatched"),
    "order.status.acknowledged": ("主站已受理", "acknowledged"),
    "order.status.completed": ("已完成（复电/停电已执行）", "restored / done"),
    "order.status.restored": ("已复电", "restored"),
    "order.status.cancelled": ("已取消", "cancelled"),
    "order.status.failed": ("下发失败，待处理", "failed: a person acts"),
    "step.dispatch": ("下发", "dispatch"),
    "step.acknowledge": ("主站受理", "acknowledge"),
    "step.confirm": ("确认送电", "supply confirmed"),
    "step.legal": ("法定时限", "legal limit"),
    "step.deadline": ("时限", "Deadline"),
    "step.done": ("完成于", "Done at"),
    "step.pending": ("进行中", "pending"),
    "severity.minor": ("差错", "minor (差错)"),
    "severity.major": ("障碍", "major (障碍)"),
    "severity.critical": ("事故", "critical (事故)"),
    "breach": ("超时", "Breach"),
    "say.restoring": ("复电预计 {deadline} 前完成。", "Supply will be back by {deadline}."),
    "say.restored": ("已于 {done} 复电。", "Supply was restored at {done}."),
    "say.late": (
        "复电已超出服务承诺时限（{deadline}），我们正在加急处理，并已登记{severity}。",
        "Reconnection is past its promised time ({deadline}); it is being expedited and "
        "recorded as a {severity} breach.",
    ),
    "say.failed": (
        "复电工单下发失败，班长将重新派单；承诺时限为 {deadline}。",
        "The reconnection order could not be delivered; a supervisor will retry it. "
        "The promise is {deadline}.",
    ),
    "say.disconnected_owes": (
        "结清欠费 {arrears} 后将自动派发复电工单，{promise} 小时内复电。",
        "Once the arrears of {arrears} are paid a reconnection order is raised at once, "
        "with supply back within {promise} hours.",
    ),
    "say.title": ("可告知客户", "What to tell the customer"),
    "notices.title": ("催费通知", "Dunning notices"),
    "notice.kind": ("通知类型", "Kind"),
    "notice.notice": ("停电通知书", "notice"),
    "notice.final_reminder": ("最后催告", "final reminder"),
    # actions
    "action.reason": ("原因（必填，将记入操作记录）", "Reason (required, goes to the audit trail)"),
    "action.serve_notice": ("送达停电通知书", "Serve a dunning notice"),
    "action.final_reminder": ("送达最后催告", "Serve the final reminder"),
    "action.retry": ("重新派单", "Retry the order"),
    "action.negotiate": ("登记大客户停电协商", "Record the negotiation (大客户停电协商)"),
    "action.counterpart": ("客户方协商人", "Who agreed at the customer"),
    "action.agreed_on": ("约定停电日期", "Agreed disconnection date"),
    "action.terms": ("协商内容", "What was agreed"),
    "action.approve": ("批准停电", "Approve the disconnection"),
    "action.done": ("已完成。", "Done."),
    "negotiations.title": ("停电协商", "Negotiations"),
    "negotiation.approved": ("已批准，工单 {order}", "approved, order {order}"),
    "negotiation.pending": ("待批准", "awaiting approval"),
    # finance
    "finance.title": ("对账与挂账", "Reconciliation and suspense"),
    "finance.runs": ("对账批次（按渠道、日期）", "Reconciliation runs by channel and day"),
    "finance.channel": ("渠道", "Channel"),
    "finance.date": ("业务日期", "Business date"),
    "finance.lines": ("笔数", "Lines"),
    "finance.net": ("净额", "Net"),
    "finance.open": ("待处理差异", "Open findings"),
    "finance.in_suspense": ("挂账", "In suspense"),
    "finance.findings": ("待处理对账差异", "Open findings"),
    "finance.class": ("差异类型", "Class"),
    "finance.amount": ("金额", "Amount"),
    "finance.statement": ("对账单", "Statement"),
    "finance.ledger": ("账务", "Ledger"),
    "finance.difference": ("差额", "Difference"),
    "finance.subject": ("对象", "Subject"),
    "finance.resolve": ("处理", "Resolve"),
    "finance.confirm": ("确认账务无误", "Confirm the ledger"),
    "finance.reverse": ("冲正该笔缴费", "Reverse the payment"),
    "finance.suspense": ("挂账款项", "Money in suspense"),
    "finance.ageing": ("挂账账龄（天）", "Suspense ageing (days)"),
    "finance.assign": ("转入户号", "Assign to account"),
    "finance.release": ("退出挂账", "Release"),
    "finance.vouchers": ("充值卡负债", "Voucher liability"),
    "finance.vouchers_owed": (
        "已售出、未充值的充值卡（{currency}）",
        "Cards sold and not yet redeemed ({currency})",
    ),
    "finance.none": ("没有。", "None."),
    "finance.since": ("挂账时间", "Since"),
    "finance.payment_findings": ("销户后来款（挂账）", "Payments held for closed accounts"),
    "finance.payment_findings_note": (
        "已销户户号收到的缴费，挂在暂收款中、未冲抵任何电费。转入其他在用户号，或原路退回付款人。",
        "Payments that arrived for closed accounts, held in suspense and never allocated. "
        "Assign each to another open account, or refund it to the payer.",
    ),
    "finance.held_for": ("原户号", "Paid to"),
    "finance.paid": ("缴费时间", "Paid"),
    "finance.refund": ("退回付款人", "Refund to the payer"),
    "finance.route": ("退款途径", "Refund route"),
    "finance.no_route": ("未配置退款途径。", "No refund route is configured."),
    "finance.payee_name": ("收款人（转账）", "Payee (transfer)"),
    "finance.payee_account": ("收款账号", "Payee account"),
    "finance.payee_bank": ("收款行行号", "Payee bank code"),
    "class.only_in_ledger": ("系统有、对账单无", "only in ledger"),
    "class.only_in_statement": ("对账单有、系统无", "only in statement"),
    "class.amount_mismatch": ("金额不符", "amount mismatch"),
    "class.duplicate_in_statement": ("对账单重复", "duplicate in statement"),
    "class.other_business_date": ("业务日期不同", "other business date"),
    "class.matched": ("已对平", "matched"),
    # dashboard
    "promise.title": ("复电服务承诺", "Reconnection promise"),
    "promise.today": ("今日", "Today"),
    "promise.month": ("本月", "This month"),
    "promise.completed": ("已复电", "Restored"),
    "promise.on_time": ("按时", "On time"),
    "promise.late": ("超时", "Late"),
    "promise.open": ("处理中", "Under way"),
    "promise.breaches": (
        "本月超时（按严重程度、环节）",
        "Breaches this month by severity and step",
    ),
    "promise.at_risk": ("一小时内到期的工单", "Orders due within the hour"),
    "promise.failed": ("下发失败的工单", "Failed orders"),
    "promise.account": ("户号", "Account"),
    "promise.headend_said": ("主站返回（原文）", "Head-end's answer (as sent)"),
    "promise.due": ("承诺时限", "Promised by"),
    "promise.next_step": ("下一环节时限", "Next step due"),
    "audit.title": ("操作记录", "Audit trail"),
    "audit.at": ("时间", "At"),
    "audit.who": ("人员", "Who"),
    "audit.action": ("操作", "Action"),
    "audit.subject": ("对象", "Subject"),
    "audit.outcome": ("结果", "Outcome"),
    "audit.reason": ("原因", "Reason"),
    # the trail's actions and outcomes (audit.action.<action>, audit.outcome.<outcome>)
    "audit.action.sign_in": ("登录", "sign-in"),
    "audit.action.sign_out": ("退出", "sign-out"),
    "audit.action.serve_notice": ("送达催费通知", "serve a dunning notice"),
    "audit.action.record_negotiation": ("登记大客户停电协商", "record a negotiation"),
    "audit.action.approve_disconnection": ("批准停电", "approve a disconnection"),
    "audit.action.retry_order": ("重新派单", "retry an order"),
    "audit.action.resolve_finding": ("处理对账差异", "resolve a finding"),
    "audit.action.assign_suspense": ("挂账转入户号", "assign suspense to an account"),
    "audit.action.release_suspense": ("退出挂账", "release suspense"),
    "audit.action.assign_payment_finding": (
        "销户后来款转入户号",
        "assign a payment held for a closed account",
    ),
    "audit.action.refund_payment_finding": (
        "销户后来款退回付款人",
        "refund a payment held for a closed account",
    ),
    "audit.action.staff_add": ("登记员工", "register a staff member"),
    "audit.action.staff_link": ("关联统一身份认证", "link to the identity provider"),
    "audit.action.staff_disable": ("停用员工账号", "disable a staff member"),
    "audit.outcome.requested": ("已申请", "requested"),
    "audit.outcome.done": ("已完成", "done"),
    "audit.outcome.refused": ("未完成", "refused"),
    # why a supply order was raised (order.reason.<reason>; a negotiation's own words as they are)
    "order.reason.arrears cleared": ("欠费已结清", "arrears cleared"),
    "order.reason.balance settled": ("账户余额已结清", "balance settled"),
    "order.reason.arrears cleared before the cut": (
        "停电前已结清欠费",
        "arrears cleared before the cut",
    ),
    "order.reason.arrears": ("欠费停电", "arrears"),
}


class Translator:
    """The catalogue's words in one language, and how that language writes money and times."""

    def __init__(self, language: str, zone: str) -> None:
        self.language = language if language in LANGUAGES else LANGUAGES[0]
        self._index = LANGUAGES.index(self.language)
        self._zone = ZoneInfo(zone)

    def __call__(self, key: str, **values: object) -> str:
        """The text of ``key``, with ``values`` put in its ``{placeholders}``."""
        text = CATALOGUE[key][self._index]
        return text.format(**values) if values else text

    def maybe(self, prefix: str, value: str) -> str:
        """The text of ``prefix.value`` if the catalogue has it, else ``value`` itself (a
        channel added by a plug-in, say)."""
        entry = CATALOGUE.get(f"{prefix}.{value}")
        return value if entry is None else entry[self._index]

    def money(self, amount: Money) -> str:
        """``¥1,010.00`` for CNY, ``1,010.00 USD`` otherwise; money back ``-¥30.00``."""
        sign = "-" if amount.minor < 0 else ""
        text = f"{abs(amount).to_decimal():,.{minor_units_exponent(amount.currency)}f}"
        return f"{sign}¥{text}" if amount.currency == "CNY" else f"{sign}{text} {amount.currency}"

    def when(self, instant: datetime | None) -> str:
        """A time in the utility's zone: ``2026-11-25 18:00``."""
        if instant is None:
            return ""
        return instant.astimezone(self._zone).strftime("%Y-%m-%d %H:%M")
