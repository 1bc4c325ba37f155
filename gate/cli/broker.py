"""The venue broker's command: `gate broker config` writes a Mosquitto configuration with TLS,
a user per party and an ACL (gate/bus/brokerconf.py does the work)."""

from __future__ import annotations

from gate.cli.exits import OK, BadUsage


def broker_config(args) -> int:
    """`gate broker config --out DIR`: the broker's files; prints the users and the house's [mqtt]."""
    from gate.bus import brokerconf
    venue = args.venue
    if not venue and args.config:
        from gate.config import load
        venue = load(args.config).venue
    if not venue:
        raise BadUsage("broker config needs --venue or -c HOUSE_CONFIG")
    split = lambda text: [x.strip() for x in (text or "").split(",") if x.strip()]
    hosts = args.host or brokerconf.default_hosts()
    try:
        made = brokerconf.write_config(args.out, venue, split(args.gates), split(args.dashboards), hosts,
                                       args.port, args.bind)
    except brokerconf.BrokerConfigError as exc:
        raise BadUsage(f"broker config: {exc}") from exc
    print(f"wrote {made['conf']} (users: {', '.join(made['users'])})")
    for user, path in made["new_passwords"].items():
        print(f"new password for {user}: {path}")
    print("give each party only its own users/NAME.password and ca.crt; for the house:")
    print(brokerconf.mqtt_section(args.out, brokerconf.HOUSE, hosts[0], args.port))
    return OK


def add_broker(sub) -> None:
    br = sub.add_parser("broker", help="the venue's MQTT broker").add_subparsers(dest="broker_cmd", required=True)
    s = br.add_parser("config", help="write a Mosquitto configuration: TLS, a user per party, ACL")
    s.add_argument("--out", required=True, help="directory for gate.conf, certificates, passwd, acl, users/")
    s.add_argument("--venue", help="venue id (default: from -c)")
    s.add_argument("-c", "--config", help="the house config (for its venue)")
    s.add_argument("--gates", default="", help="gate ids, comma-separated (one broker user each)")
    s.add_argument("--dashboards", default="dashboard", help="read-only dashboard users, comma-separated")
    s.add_argument("--host", action="append", help="a name or address gates use for the broker (repeatable; "
                   "default: this machine's host name, NAME.local, localhost, 127.0.0.1)")
    s.add_argument("--port", type=int, default=8883)
    s.add_argument("--bind", default="", help="listen on this address only (default: all)")
    s.set_defaults(func=broker_config)


# name -> adds that command to `gate`'s subparsers (gate/cli/main.py puts them in order)
COMMANDS = {"broker": add_broker}
