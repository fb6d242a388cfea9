"""Ops tools: the `fulfil` CLI and the live dashboard. They read the streams without a consumer
group and each service's database read-only; they own no data and emit no events."""
