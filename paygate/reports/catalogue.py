"""The Chinese of every sentence the HTML reports show, keyed by its English.

One place for every word: a report looks each sentence up here through
:class:`paygate.reports.i18n.Words`, and the tests render every report in Chinese, so a sentence
missing here fails them. ``{name}`` placeholders are filled after the lookup; the Chinese keeps
every placeholder of the English (checked by tests/test_report_language.py).

The terms are the utility's own: 电费 (the bill), 违约金 (late fee), 欠费复电 (reconnection after
arrears), 停电 / 复电 (disconnection / reconnection), 服务承诺 (the promise), 差错 / 障碍 / 事故
(minor / major / critical breach), 对账 (reconciliation), 挂账 (suspense), 差异 (a finding),
渠道 (channel).
"""

from __future__ import annotations

from typing import Final

__all__ = ["CATALOGUE"]

_SERVICE: Final[dict[str, str]] = {
    # the page
    "Service report, {period}": "服务承诺报告，{period}",
    "Service report: supply orders against the promise": "服务承诺报告：停复电工单执行情况",
    "{start} to {end}": "{start} 至 {end}",
    "Orders created {period} ({zone}), open orders judged as of {as_of}. Reconnection orders "
    "count under the channel of the payment that cleared the arrears; disconnection orders "
    "under {none}.": "统计 {period}（{zone}）内创建的工单，未完成工单按 {as_of} 判定。欠费复电工单"
    "计入结清欠费（电费及违约金）的缴费渠道；停电工单计入“{none}”。",
    "— (no payment)": "—（无缴费）",
    "all channels": "全部渠道",
    "of {judged} orders judged were confirmed within the promise ({promise})": "在 {judged} "
    "张参与判定的工单中，于服务承诺时限（{promise}）内确认复电的比例",
    "{on_time} on time, {late} confirmed late, {open_late} still open past the promise; "
    "{orders} orders created, {open} still open.": "按时 {on_time} 张，超时确认 {late} 张，"
    "超过承诺时限仍未完成 {open_late} 张；共创建工单 {orders} 张，尚未完成 {open} 张。",
    "{breaches} breaches ({critical} critical): missed deadlines of single steps, counted once "
    "per order and step. The rate above is of whole orders against the promise, so an order "
    "confirmed in time can still have breached its dispatch or acknowledge deadline.": "超时记录 "
    "{breaches} 条（其中事故 {critical} 条）：按工单和环节各记一次的环节时限超时。上方比例针对整张"
    "工单是否兑现服务承诺，因此按时复电的工单仍可能在下发或接收环节超时。",
    "By channel": "按渠道",
    "By step": "按环节",
    "Time per step": "各环节用时",
    "Breaches by severity": "超时记录（按等级）",
    "Step by channel": "各渠道分环节明细",
    "How to read this report": "报告说明",
    # tables
    "channel": "渠道",
    "orders": "工单数",
    "completed": "已完成",
    "open": "未完成",
    "on time (end to end)": "按时率（全程）",
    "open past the promise": "超承诺未完成",
    "median": "中位数",
    "p95": "p95",
    "worst": "最长",
    "breaches": "超时记录",
    "step (all channels)": "环节（全部渠道）",
    "budget": "时限",
    "reached": "已完成环节",
    "on time": "按时率",
    "reached late": "超时完成",
    "open late": "超时未完成",
    "total": "合计",
    "step": "环节",
    "{step}: {title}": "{step}：{title}",
    "dispatch": "下发",
    "acknowledge": "接收",
    "confirm": "复电确认",
    "end to end": "全程",
    "created → dispatched": "创建 → 下发",
    "dispatched → acknowledged": "下发 → 主站接收",
    "acknowledged → confirmed": "接收 → 确认送电",
    "created → confirmed (end to end)": "创建 → 确认送电（全程）",
    "minor": "差错",
    "major": "障碍",
    "critical": "事故",
    # charts
    "Time per channel, {title}": "各渠道用时，{title}",
    "{step}, budget {budget}": "{step}，时限 {budget}",
    "budget {budget}": "时限 {budget}",
    "no order reached this step": "没有工单完成此环节",
    "median {median} · p95 {p95} · n={n}": "中位数 {median} · p95 {p95} · 共 {n} 张",
    "Bars: median (dark) inside p95 (light) per channel; the dashed line is the time the step "
    "is allowed under the current promise. The axis (h:mm) runs to the longest p95.": "条形：各渠道"
    "的中位数（深色）叠在 p95（浅色）之内；虚线为现行服务承诺给该环节的时限。"
    "横轴（时:分）覆盖最长的 p95。",
    "Breaches per channel by severity": "各渠道超时记录（按等级）",
    "{total} ({minor} minor, {major} major, {critical} critical)": "{total}（差错 {minor}，障碍 "
    "{major}，事故 {critical}）",
    "Each bar is a channel's recorded breaches, minor, major and critical stacked; the axis "
    "counts breaches.": "每个条形为一个渠道的超时记录，差错、障碍、事故依次叠加；横轴为记录条数。",
    # definitions
    ", ": "，",
    "{step} {budget}": "{step} {budget}",
    "Orders": "工单",
    "Reconnection and disconnection orders created in the period (dates in {zone}). A "
    "reconnection order counts under the channel of the payment that cleared the arrears; "
    "disconnection orders, and reconnection orders no payment created, count under {none}.": "统计"
    "期内创建的复电和停电工单（日期按 {zone}）。欠费复电工单计入结清欠费的缴费渠道；停电工单，以及"
    "非缴费产生的复电工单，计入“{none}”。",
    "Steps": "环节",
    "dispatch: created → dispatched to the head-end; acknowledge: dispatched → acknowledged by "
    "it; confirm: acknowledged → supply confirmed; end to end: created → supply confirmed. A "
    "later step reached implies the earlier ones.": "下发：创建 → 下发至主站；接收：下发 → 主站确认"
    "接收；复电确认：接收 → 确认送电；全程：创建 → 确认送电。完成后一环节即视为已完成前面各环节。",
    "On time": "按时率",
    "Reached by the step's own deadline, stored on the order when it was created (the promise "
    "counted backwards). The rate is on time ÷ (reached + still open past the deadline): the "
    "orders judged. Orders whose deadline has not come yet, and cancelled orders, are left out. "
    "Failed orders are still open: they are still owed. The headline's rate is this figure for "
    "end to end over every channel.": "在该环节自身的时限内完成；时限在工单创建时按服务承诺倒推并"
    "记录在工单上。按时率 = 按时数 ÷（已完成数 + 超过时限仍未完成数），分母即参与判定的工单。"
    "时限未到的工单和已撤销的工单不计入。执行失败的工单仍视为未完成，因为仍欠用户复电。报告顶部的"
    "比例即全部渠道“全程”环节的按时率。",
    "Median, p95, worst": "中位数、p95、最长",
    "Nearest-rank percentiles of the exact durations: the value at rank ⌈p × n / 100⌉ of the n "
    "durations in ascending order, always a time some order actually took (for an even count, "
    "the median is the lower middle value). Durations are shown h:mm, rounded up to the "
    "minute.": "按最近秩法计算的精确用时百分位数：n 个用时升序排列后第 ⌈p × n / 100⌉ 个值，必为"
    "某张工单的实际用时（个数为偶数时，中位数取中间偏小的值）。用时以 时:分 显示，按分钟向上取整。",
    "Budgets": "时限",
    "The time each step is allowed under the current promise: {budgets}. The charts mark it; "
    "on-time is judged against each order's own deadlines.": "现行服务承诺给各环节的时限：{budgets}"
    "。图中以虚线标出；是否按时以每张工单自身记录的时限判定。",
    "Breaches": "超时记录",
    "A missed step deadline, recorded once per order and step when first seen: minor while the "
    "promise still held, major once the promise was missed, critical once the legal limit was "
    "missed. Breaches are counts of missed deadlines, not a share of orders: one late order can "
    "add up to four.": "环节时限被突破时记录"
    "一次（每张工单每个环节一次）：服务承诺尚未突破时为差错，突破服务承诺为障碍，突破法定时限为"
    "事故。超时记录是条数而非工单比例：一张超时工单最多可产生四条。",
}

_RECONCILE: Final[dict[str, str]] = {
    "Reconciliation, {when}": "对账报告，{when}",
    "Reconciliation: {when}": "对账报告：{when}",
    "no run": "无对账批次",
    "Each channel statement and bank statement against the ledger, as of {as_of}. Open "
    "findings wait for a person; pending items are still inside their channel's grace "
    "days.": "各渠道对账单及银行对账单与账务核对，截至 {as_of}。待处理差异需人工处理；待定项仍在"
    "渠道宽限期内。",
    "open findings": "待处理差异",
    "items in suspense": "挂账笔数",
    "pending (within grace days)": "待定（宽限期内）",
    "statement lines and bank entries": "对账单明细及银行流水笔数",
    "Runs": "对账批次",
    "business date": "业务日期",
    "run": "批次",
    "file": "文件",
    "lines": "笔数",
    "gross": "交易总额",
    "fees": "手续费",
    "net": "结算净额",
    "suspense": "挂账",
    "pending": "待定",
    "bank leg": "银行到账",
    "state": "状态",
    "bank statement": "银行对账单",
    "settled {net} on {day}": "已于 {day} 到账 {net}",
    "not settled yet (due {day})": "尚未到账（应于 {day}）",
    "superseded": "已被新批次取代",
    "fully reconciled": "已对平",
    "open findings remain": "尚有待处理差异",
    "Totals per class": "各类别合计",
    "sum of the classes (= gross)": "各类别之和（= 交易总额）",
    "{title} (not in the gross)": "{title}（不计入交易总额）",
    "Matched and unmatched amounts by channel": "各渠道已匹配与未匹配金额",
    "matched": "已匹配",
    "not matched": "未匹配",
    "not matched (absolute amounts)": "未匹配（金额取绝对值）",
    "Amounts per channel day (statement amounts; ledger amounts for what only the ledger has). "
    "Currencies differ between days only when the channels do.": "各渠道各业务日的金额（按对账单"
    "金额；仅账务有的按账务金额）。只有渠道币种不同时各日币种才会不同。",
    "Open findings": "待处理差异",
    "Pending and in suspense": "待定与挂账",
    "channel day": "渠道业务日",
    "finding": "差异编号",
    "class": "类别",
    "{subject} (line {line})": "{subject}（第 {line} 行）",
    "transaction / reference": "交易号 / 参考号",
    "account": "户号",
    "amount": "金额",
    "statement": "对账单金额",
    "ledger": "账务金额",
    "difference": "差额",
    "due / state": "处理期限 / 状态",
    "note": "备注",
    "in suspense": "挂账中",
    "suspense item {item}": "挂账项 {item}",
    "{run}:{seq} (suspense item {item})": "{run}:{seq}（挂账项 {item}）",
    "None.": "无。",
    "… and {more} more: every finding is in the CSV or JSON report.": "……另有 {more} 条：全部差异"
    "见 CSV 或 JSON 报告。",
    "What each figure and class means": "各数字与类别的含义",
    "Gross": "交易总额",
    "Statement, ledger, difference": "对账单金额、账务金额、差额",
    "A finding's money with its direction: a payment positive, a refund, void or reversal "
    "negative (money back to the customer). For a refund the ledger shows the original "
    "payment's reversal, or 0.00 while the original is still posted, so the difference shows "
    "the money that left and the ledger has not given back.": "差异金额带方向：缴费为正，退款、"
    "撤销和冲正为负（退回客户的钱）。退款的账务金额为原缴费的冲正；原缴费仍未冲正时为 0.00，"
    "因此差额即已退出而账务尚未退回的金额。",
    "Payments less refunds, voids and reversals on the statement (for a bank statement, its "
    "credits). The totals per class count a refund, void or reversal as negative, so the "
    "statement's classes add up to the gross; what only the ledger has, bank debits and the "
    "differences of bank statements that do not balance are no part of it, and are shown "
    "apart.": "对账单上的缴费减去退款、撤销和冲正（银行对账单为其入账合计）。各类别合计中退款、"
    "撤销和冲正记为负数，因此对账单各类别之和等于交易总额；仅账务侧有的款项、银行支出及银行对账单"
    "不平的差额不属于交易总额，单独列示。",
    "Fees": "手续费",
    "What the channel keeps: the statement's fees, refunds' fees less.": "渠道收取的费用：对账单"
    "手续费减去退款退回的手续费。",
    "Net": "结算净额",
    "What the channel settles to the utility's bank account: gross less fees.": "渠道结算至供电"
    "企业银行账户的金额：交易总额减手续费。",
    "Findings that wait for a person now; red when there are any. Items in suspense are money "
    "from lines that named no known account.": "当前需人工处理的差异；有差异时以红色显示。"
    "挂账为对账单中户号无法识别的款项。",
    # the classes
    "Matched": "已匹配",
    "The statement line and the ledger payment agree.": "对账单明细与账务缴费一致。",
    "Refund or reversal matched": "退款或冲正已匹配",
    "A refund, void or reversal line whose original payment the ledger has reversed.": "退款、"
    "撤销或冲正明细，其原缴费已在账务中冲正。",
    "Only in the statement": "仅对账单有",
    "The channel took money the ledger does not have. A known account is posted as a late "
    "payment; an unknown one goes to suspense; a refund the ledger has not reversed waits for a "
    "person (reverse or confirm).": "渠道收款而账务没有。户号可识别的补记为迟到缴费；无法识别的"
    "转入挂账；账务未冲正的退款待人工处理（冲正或确认）。",
    "Only in the ledger": "仅账务有",
    "The ledger has a payment (or a reversal, or money in suspense) the statement does not "
    "show. Pending through the channel's grace days; after them an open finding: reverse it or "
    "confirm it. Never reversed automatically.": "账务有缴费（或冲正、挂账款项）而对账单没有。宽限"
    "期内为待定；过期后成为待处理差异：冲正或确认。从不自动冲正。",
    "Amount mismatch": "金额不符",
    "The same transaction with a different amount or currency: an open finding for a "
    "person.": "同一笔交易金额或币种不同：待人工处理的差异。",
    "Another business day": "其他业务日",
    "A line whose time, or whose payment in the ledger, is of another business day than the "
    "run's. A payment is matched by its own day's run only: an open finding for a person; never "
    "posted late or put in suspense.": "明细时间或其账务缴费属于本批次以外的业务日。缴费只在其本"
    "业务日的批次中匹配：待人工处理，不补记，也不挂账。",
    "Duplicate in the statement": "对账单重复",
    "A transaction listed again: an open finding for a person; never posted twice.": "同一笔交易"
    "重复列出：待人工处理，绝不重复入账。",
    "Settlement matched": "结算已匹配",
    "A bank credit that is a channel day's net settlement: clearing closed, fees posted.": "银行"
    "入账为某渠道某业务日的结算净额：清算已结清，手续费已入账。",
    "Settlement mismatch": "结算金额不符",
    "A bank credit whose reference names a channel day that should settle another "
    "amount.": "银行入账的参考号指向的渠道业务日应结算另一金额。",
    "Bank credit unmatched": "银行入账未匹配",
    "Money on the bank statement no channel settlement accounts for (yet).": "银行对账单上（暂时）"
    "没有渠道结算对应的款项。",
    "Bank debit": "银行支出",
    "Money out of the utility's bank account (a bank charge, a returned credit): nothing posts "
    "it automatically; finance books it and confirms the finding.": "从供电企业银行账户支出的款项"
    "（银行费用、退回的入账）：不自动入账，由财务记账并确认该差异。",
    "Bank statement does not balance": "银行对账单不平",
    "Opening balance plus entries is not the closing balance the bank states.": "期初余额加本期"
    "发生额不等于银行所列期末余额。",
}

CATALOGUE: Final[dict[str, str]] = {**_SERVICE, **_RECONCILE}
"""English sentence → its Chinese (zh-CN)."""
