"""The venue broker's command: `gate broker config` writes a Mosquitto configuration with TLS,
a user per party and an ACL (gate/bus/brokerconf.py does the work); with `--bridge` an entrance's
broker bridged to the core, or the core's side of such a bridge (gate/bus/bridgeconf.py);
`gate broker revoke NAME` takes a party out again and reloads the broker (gate/bus/revoke.py)."""

from __future__ import annotations

from gate.cli.exits import OK, BadUsage


def _split(text) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def broker_config(args) -> int:
    """`gate broker config --out DIR`: the broker's files; prints the users and the house's [mqtt]."""
    from gate.bus import brokerconf
    venue = args.venue
    if not venue and args.config:
        from gate.config import load
        venue = load(args.config).venue
    if not venue:
        raise BadUsage("broker config needs --venue or -c HOUSE_CONFIG")
    hosts = args.host or brokerconf.default_hosts()
    if args.bridge or args.core or args.core_dir or args.core_ca or args.bridge_password_file:
        return _bridge(args, venue, hosts)
    dashboards = _split("dashboard" if args.dashboards is None else args.dashboards)
    try:
        made = brokerconf.write_config(args.out, venue, _split(args.gates), dashboards, hosts, args.port, args.bind)
    except brokerconf.BrokerConfigError as exc:
        raise BadUsage(f"broker config: {exc}") from exc
    print(f"wrote {made['conf']} (users: {', '.join(made['users'])})")
    for user, path in made["new_passwords"].items():
        print(f"new password for {user}: {path}")
    print("give each party only its own users/NAME.password and ca.crt; for the house:")
    print(brokerconf.mqtt_section(args.out, brokerconf.HOUSE, hosts[0], args.port))
    return OK


def _bridge(args, venue: str, hosts: list[str]) -> int:
    """`--bridge NAME --core HOST`: an entrance's broker; `--bridge NAME` alone: the core's side of it."""
    from gate.bus import bridgeconf, brokerconf
    if not args.bridge:
        raise BadUsage("broker config: --core, --core-dir, --core-ca and --bridge-password-file go with --bridge NAME")
    gates = _split(args.gates)
    if args.dashboards is not None:
        raise BadUsage("broker config: dashboards use the core broker, not an entrance's (leave out --dashboards)")
    try:
        if not args.core:
            if args.core_dir or args.core_ca or args.bridge_password_file:
                raise BadUsage("broker config: --core-dir, --core-ca and --bridge-password-file describe the core "
                               "to an entrance: give --core HOST[:PORT] too")
            if not gates:
                raise BadUsage("broker config: --bridge NAME on the core needs the entrance's --gates")
            made = bridgeconf.add_bridge(args.out, venue, args.bridge, gates)
            _print_core_side(made, args, venue)
            return OK
        made = bridgeconf.configure(args.out, venue, args.bridge, gates, hosts, args.core, core_dir=args.core_dir,
                                    core_ca=args.core_ca, password_file=args.bridge_password_file,
                                    port=args.port, bind=args.bind)
    except brokerconf.BrokerConfigError as exc:
        raise BadUsage(f"broker config: {exc}") from exc
    if made["core"]:
        _print_core_side(made["core"], args, venue, entrance_done=True)
    print(f"wrote {made['conf']}: entrance {args.bridge}, bridged to {args.core} (gate users: "
          f"{', '.join(made['users'])})")
    for user, path in made["new_passwords"].items():
        print(f"new password for {user}: {path}")
    print("restart Mosquitto here (a bridge is read only at start); give each gate its own users/NAME.password "
          "and ca.crt (this entrance's CA); a gate's [mqtt]:")
    print(brokerconf.mqtt_section(args.out, made["users"][0], hosts[0], args.port))
    return OK


def _print_core_side(made: dict, args, venue: str, entrance_done: bool = False) -> None:
    print(f"core {made['dir']}: bridge user {args.bridge} for gates {', '.join(made['gates'])}")
    for user, path in made["new_passwords"].items():
        print(f"new password for {user}: {path}")
    print("reload Mosquitto on the core (systemctl reload mosquitto: users and ACL)")
    if not entrance_done:
        print(f"copy {made['ca']} and {made['password_file']} to the entrance's broker, then there:")
        print(f"  gate broker config --out DIR --venue {venue} --bridge {args.bridge} --core CORE_HOST "
              f"--core-ca core-ca.crt --bridge-password-file {args.bridge}.password --gates {','.join(made['gates'])} "
              "--host ENTRANCE_HOST")


def broker_revoke(args) -> int:
    """`gate broker revoke NAME --out DIR`: the credential removed, the broker reloaded, the refusal checked."""
    from gate.bus.revoke import main
    return main(args.out, args.name, args.pid, args.pid_file, args.host)


def add_broker(sub) -> None:
    br = sub.add_parser("broker", help="the venue's MQTT broker").add_subparsers(dest="broker_cmd", required=True)
    s = br.add_parser("config", help="write a Mosquitto configuration: TLS, a user per party, ACL; "
                                     "an entrance's broker bridged to the core (--bridge)")
    s.add_argument("--out", required=True, help="directory for gate.conf, certificates, passwd, acl, users/")
    s.add_argument("--venue", help="venue id (default: from -c)")
    s.add_argument("-c", "--config", help="the house config (for its venue)")
    s.add_argument("--gates", default="", help="gate ids, comma-separated (one broker user each)")
    s.add_argument("--dashboards", default=None, help="read-only dashboard users, comma-separated "
                   "(default: dashboard)")
    s.add_argument("--host", action="append", help="a name or address gates use for the broker (repeatable; "
                   "default: this machine's host name, NAME.local, localhost, 127.0.0.1)")
    s.add_argument("--port", type=int, default=8883)
    s.add_argument("--bind", default="", help="listen on this address only (default: all)")
    s.add_argument("--bridge", metavar="NAME", help="an entrance's bridge: with --core, write that entrance's "
                   "broker; without, give the bridge its user on this (the core's) broker for --gates")
    s.add_argument("--core", metavar="HOST[:PORT]", help="the core broker the entrance bridges to (port 8883 "
                   "unless given; a name in the core's certificate)")
    s.add_argument("--core-dir", metavar="DIR", help="the core broker's directory, when at hand: its CA and the "
                   "bridge's password are taken from it, and the bridge's user is added to it")
    s.add_argument("--core-ca", metavar="FILE", help="a copy of the core's ca.crt (without --core-dir)")
    s.add_argument("--bridge-password-file", metavar="FILE", help="a copy of the core's users/NAME.password "
                   "(without --core-dir)")
    s.set_defaults(func=broker_config)
    s = br.add_parser("revoke", help="remove a gate's (or dashboard's, or bridge's) credential and reload the broker")
    s.add_argument("name", help="the gate, dashboard or entrance bridge user to remove")
    s.add_argument("--out", required=True, help="the directory gate broker config wrote")
    s.add_argument("--pid", type=int, help="the broker's pid (default: systemctl reload mosquitto)")
    s.add_argument("--pid-file", help="a file holding the broker's pid")
    s.add_argument("--host", help="where to check the refusal (default: the listener's address, or 127.0.0.1)")
    s.set_defaults(func=broker_revoke)


# name -> adds that command to `gate`'s subparsers (gate/cli/main.py puts them in order)
COMMANDS = {"broker": add_broker}
