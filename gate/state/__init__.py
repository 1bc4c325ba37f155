"""What a gate keeps: its ticket store, the outbox, list updates, disk space, health figures."""
