"""Test data for the pretix test server. Runs INSIDE pretix's own venv (not the gate's):
reads a JSON spec on stdin, writes one JSON line with what it made.

Actions: "event" (organizer, event or series with dates, items, paid/pending/cancelled
orders, a check-in list, an API token), "block"/"unblock" (what pretix's order change
does; `blocked` is read-only in the REST API), "reissue" (a new secret, the old one on the
revocation list, as when a ticket's validity changes).
"""

import json
import sys
from datetime import timedelta
from decimal import Decimal

import django

django.setup()

from django.utils.timezone import now
from django_scopes import scopes_disabled
from pretix.base.models import (
    CheckinList,
    Event,
    Item,
    Order,
    OrderPosition,
    Organizer,
    Quota,
    SubEvent,
    Team,
)
from pretix.base.secrets import assign_ticket_secret


def make_event(spec):
    org, _ = Organizer.objects.get_or_create(slug=spec["organizer"], defaults={"name": spec["organizer"]})
    org.create_default_sales_channels()
    start = now() + timedelta(hours=1)
    ev = Event.objects.create(organizer=org, name=spec["event"], slug=spec["event"], date_from=start,
                              currency="EUR", has_subevents=bool(spec.get("dates")), live=True)
    if spec.get("signed"):
        ev.settings.ticket_secret_generator = "pretix_sig1"
    dates = [SubEvent.objects.create(event=ev, name=f"date {i + 1}", date_from=start + timedelta(days=i), active=True)
             for i in range(spec.get("dates", 0))]
    items = []
    for it in spec.get("items", [{"name": "Admission"}]):
        items.append(Item.objects.create(event=ev, name=it["name"], default_price=Decimal("10.00"), admission=True,
                                         checkin_attention=bool(it.get("attention"))))
    for sub in dates or [None]:
        q = Quota.objects.create(event=ev, name="all", size=None, subevent=sub)
        q.items.set(items)
    clist = CheckinList.objects.create(event=ev, name="doors", all_products=True, include_pending=False)
    extra = [CheckinList.objects.create(event=ev, name=f"doors {i + 2}", all_products=True).pk
             for i in range(spec.get("extra_lists", 0))]
    channel = org.sales_channels.get(identifier="web")
    positions = []
    by_order = {}
    for i, p in enumerate(spec.get("positions", [])):
        key = p.get("order", i)
        status = p.get("status", "p")
        order = by_order.get(key)
        if order is None:
            order = Order.objects.create(event=ev, status=status, email=f"guest{i}@example.org", datetime=now(),
                                         expires=now() + timedelta(days=3), total=Decimal("10.00"), locale="en",
                                         sales_channel=channel)
            by_order[key] = order
        op = OrderPosition(order=order, item=items[p.get("item", 0)], price=Decimal("10.00"),
                           attendee_name_parts={"_legacy": p["name"]} if p.get("name") else {},
                           subevent=dates[p.get("date", 0)] if dates else None,
                           positionid=order.positions.count() + 1)
        op.save()
        positions.append({"id": op.pk, "secret": op.secret, "order": order.code, "positionid": op.positionid})
    if spec.get("bulk"):
        positions += bulk_positions(ev, items[0], channel, spec["bulk"])
    team = Team.objects.create(organizer=org, name="gate", all_events=True, all_event_permissions=True,
                               all_organizer_permissions=True)
    token = team.tokens.create(name="gate house")
    return {"organizer": org.slug, "event": ev.slug, "checkin_list": clist.pk, "extra_lists": extra, "token": token.token,
            "items": [i.pk for i in items], "subevents": [s.pk for s in dates], "positions": positions,
            "key": ev.settings.ticket_secrets_pretix_sig1_pubkey or ""}


def bulk_positions(ev, item, channel, n):
    """Many paid one-ticket orders at once (benchmarks): bulk inserts, pretix-style random secrets."""
    from django.utils.crypto import get_random_string
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    orders = [Order(event=ev, organizer=ev.organizer, code=get_random_string(10, "ABCDEFGHJKLMNPQRSTUVWXYZ3789"), status="p",
                    email=f"bulk{i}@example.org", datetime=now(), expires=now() + timedelta(days=3),
                    total=Decimal("10.00"), locale="en", sales_channel=channel, secret=get_random_string(16))
              for i in range(n)]
    Order.objects.bulk_create(orders, batch_size=500)
    orders = list(Order.objects.filter(event=ev, email__startswith="bulk").order_by("pk"))
    ops = [OrderPosition(order=o, organizer=ev.organizer, item=item, price=Decimal("10.00"), positionid=1,
                         tax_rate=Decimal("0"), tax_value=Decimal("0"),
                         attendee_name_parts={"_legacy": f"Bulk Guest {i}"}, attendee_name_cached=f"Bulk Guest {i}",
                         secret=get_random_string(32, alphabet), pseudonymization_id=get_random_string(10).upper(),
                         web_secret=get_random_string(32))
           for i, o in enumerate(orders)]
    OrderPosition.objects.bulk_create(ops, batch_size=500)
    return [{"id": op.pk, "secret": op.secret, "order": op.order.code, "positionid": 1}
            for op in OrderPosition.objects.filter(order__event=ev, order__email__startswith="bulk").select_related("order")]


def _positions(spec):
    return OrderPosition.objects.filter(order__event__organizer__slug=spec["organizer"],
                                        order__event__slug=spec["event"], secret__in=spec["secrets"])


def block(spec, on: bool):
    for op in _positions(spec):
        op.blocked = ["admin"] if on else None
        op.save(update_fields=["blocked"])
        op.blocked_secrets.update_or_create(event=op.order.event, secret=op.secret,
                                            defaults={"blocked": on, "updated": now()})
        op.order.touch()
    return {"ok": True}


def reissue(spec):
    out = {}
    for op in _positions(spec):
        old = op.secret
        assign_ticket_secret(op.order.event, op, force_invalidate=True, save=True)
        op.order.touch()
        out[old] = op.secret
    return {"secrets": out}


def main():
    spec = json.load(sys.stdin)
    with scopes_disabled():
        action = spec.get("action", "event")
        if action == "event":
            result = make_event(spec)
        elif action in ("block", "unblock"):
            result = block(spec, action == "block")
        elif action == "reissue":
            result = reissue(spec)
        else:
            raise SystemExit(f"unknown action {action}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
