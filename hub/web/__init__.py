"""The HTTP face of the hub: staff API, operations endpoints, webhooks, citizen pages."""
