"""The thin shell that touches the world: settings, the ledger, transports and locks."""
