"""Head-end adapters: how reconnection/disconnection commands reach meters."""
