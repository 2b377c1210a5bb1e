"""Execution clients of a paper session: ``paper`` (the env's kernel, `agents.paper.broker`) and
``testnet`` (the kernel plus sandbox orders through ccxt, `agents.paper.brokers.testnet`)."""
