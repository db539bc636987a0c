"""Usage events (API requests, AI tokens, orders, reports) and their daily roll-up per tenant."""
