"""Ticket data: lists, imports, issuing, keys and signed formats, ticketing-system connectors."""
