"""The ``locstream`` command: the local broker, tokens, the four services and the dev stack."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path

from launch import broker
from launch.broker_config import BrokerConfig, ClusterConfig
from locstream.logs import configure_logging
from schemas.claims import Role


def _broker_config(args: argparse.Namespace) -> BrokerConfig:
    return BrokerConfig(data_dir=Path(args.data_dir).resolve(), port=args.port)


def cmd_broker(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    cluster = ClusterConfig.load(data_dir)  # a cluster started here before: stop, status, start again
    if args.nodes < 1:
        print("error: --nodes must be 1 or more", file=sys.stderr)
        return 2
    if args.action == "start" and (args.nodes > 1 or args.tls or args.mtls):  # --mtls implies --tls
        cluster = ClusterConfig(data_dir, args.port, args.nodes, tls=True if args.mtls else args.tls, mtls=args.mtls)
    if cluster is not None:
        return _cmd_cluster(args, cluster)
    config = _broker_config(args)
    try:
        if args.action == "start":
            started = broker.start(config)
            print(f"broker {'started' if started else 'already running'} on {config.bootstrap}")
            return 0
        if args.action == "stop":
            stopped = broker.stop(config)
            print("broker stopped" if stopped else "broker was not running")
            return 0
    except broker.BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if broker.status(config):
        print(f"broker answering on {config.bootstrap}")
        return 0
    print(f"broker not answering on {config.bootstrap}", file=sys.stderr)
    return 1


def _cmd_cluster(args: argparse.Namespace, cluster: ClusterConfig) -> int:
    """Several nodes (or one with a TLS listener): ``data_dir/cluster.json`` remembers them for stop and status."""
    try:
        if args.action == "start":
            started = broker.start_cluster(cluster)
            print(f"{cluster.nodes} node(s) {'started' if started else 'already running'}: {cluster.bootstrap}")
            if cluster.tls_files is not None:
                tls = cluster.tls_files
                print(
                    f"TLS listeners: {cluster.tls_bootstrap} (CA {tls.ca}"
                    + (f"; client certificate {tls.client_cert}, key {tls.client_key})" if cluster.mtls else ")")
                )
            return 0
        if args.action == "stop":
            print("cluster stopped" if broker.stop_cluster(cluster) else "cluster was not running")
            return 0
    except broker.BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    healthy, lines = broker.cluster_status(cluster)
    print("\n".join(lines))
    return 0 if healthy else 1


def cmd_token(args: argparse.Namespace) -> int:
    from locstream.auth import AuthError, issue_token
    from locstream.settings import AuthSettings

    try:
        settings = AuthSettings()
        token = issue_token(settings, tenant_id=args.tenant, sub=args.sub, role=Role(args.role), ttl_seconds=args.ttl)
    except (ValueError, AuthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


# Each service's app module has create_app(); its settings (app.state.settings) say where it listens.
_SERVICE_APPS = {
    "producers": "producers.app",
    "projector": "projector.app",
    "ws-edge": "ws_edge.app",
    "geofencer": "geofencer.app",
}


def cmd_service(args: argparse.Namespace) -> int:
    from locstream.serve import serve

    configure_logging()
    if getattr(args, "action", "serve") == "rebuild":
        return cmd_rebuild()
    app = importlib.import_module(_SERVICE_APPS[args.command]).create_app()
    settings = app.state.settings
    # Only the edge has WebSockets to ping; the others keep uvicorn's defaults.
    ping = (getattr(settings, "ping_interval_seconds", 20.0), getattr(settings, "ping_timeout_seconds", 20.0))
    serve(
        app,
        args.host or settings.host,
        args.port or settings.port,
        access_log=settings.access_log,
        ping=ping,
        metrics_port=settings.metrics.port,
    )
    return 0


def cmd_rebuild() -> int:
    import asyncio
    import json

    from projector.rebuild import rebuild
    from projector.settings import ProjectorSettings

    summary = asyncio.run(rebuild(ProjectorSettings()))
    print(json.dumps(summary))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    os.environ.setdefault("LOCSTREAM_DEV", "1")  # the well-known dev JWT secret unless one is set
    os.environ.setdefault("LOCSTREAM_DATA_DIR", args.data_dir)
    configure_logging()
    if os.environ.get("LOCSTREAM_JWT_JWKS_URL"):  # before a broker is started for nothing
        print("error: locstream dev signs its own tokens (HS256); unset LOCSTREAM_JWT_JWKS_URL", file=sys.stderr)
        return 2
    started_broker: BrokerConfig | None = None
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:  # otherwise the user brings a broker
        config = BrokerConfig(data_dir=Path(args.data_dir).resolve() / "broker", port=args.broker_port)
        print(f"starting the local Kafka broker on {config.bootstrap} (the first run fetches jars with Maven)")
        try:
            if broker.start(config):
                started_broker = config
        except broker.BrokerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = config.bootstrap
    # uvicorn re-raises SIGTERM once it has shut down; by default that would end the process before the finally
    # below could stop the broker it started. As SystemExit it unwinds through it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return _serve_dev(args)
    finally:
        if started_broker is not None:  # leave a broker that was already running alone
            broker.stop(started_broker)
            print("local Kafka broker stopped")


def _serve_dev(args: argparse.Namespace) -> int:
    from launch.dev import DevOptions, create_dev_app
    from launch.simulate import FLEET
    from locstream.auth import issue_token
    from locstream.serve import serve
    from locstream.settings import AuthSettings
    from ws_edge.settings import EdgeSettings

    auth = AuthSettings()
    base = f"http://{args.host}:{args.port}"
    print("\nlocstream dev stack")
    print(f"  API docs:   {base}/docs")
    print(f"  active:     {base}/api/v1/field-service/technicians/locations/active")
    print(f"  WebSocket:  ws://{args.host}:{args.port}/api/v1/field-service/ws/technician-locations?token=TOKEN")
    for tenant in FLEET:
        token = issue_token(
            auth, tenant_id=tenant, sub=f"dispatcher@{tenant}", role=Role.DISPATCHER, ttl_seconds=24 * 3600
        )
        print(f"  dispatcher token for {tenant}:\n    {token}")
    print()
    edge = EdgeSettings()
    # The access log is off unless asked for: the simulator's POSTs would flood the terminal (it logs a summary line
    # every 10 s instead).
    serve(
        create_dev_app(DevOptions(host=args.host, port=args.port, simulate=args.simulate)),
        args.host,
        args.port,
        access_log=args.access_log,
        ping=(edge.ping_interval_seconds, edge.ping_timeout_seconds),
        metrics_port=edge.metrics.port,
    )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncio

    from locstream.settings import AuthSettings, KafkaSettings
    from replay.export import run_cli

    token = args.token or os.environ.get("LOCSTREAM_TOKEN")
    return asyncio.run(
        run_cli(
            KafkaSettings(),
            AuthSettings(),
            tenant_id=args.tenant,
            token=token,
            start=args.start,
            end=args.end,
            format_name=args.format,
            technicians=args.technician or [],
            out_path=args.out,
            quality=args.quality,
        )
    )


def cmd_device(args: argparse.Namespace) -> int:
    import asyncio

    from launch.device_cli import run

    if args.action in ("add", "list") and not args.tenant:
        print("error: --tenant is required", file=sys.stderr)
        return 2
    if args.action == "add" and not args.technician:
        print("error: --technician is required", file=sys.stderr)
        return 2
    if args.action == "revoke" and not args.device_id:
        print("error: the device id is required", file=sys.stderr)
        return 2
    return asyncio.run(run(args))


def cmd_tenant_label(args: argparse.Namespace) -> int:
    from ws_edge.metrics import tenant_label

    print(tenant_label(args.tenant))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    # The benchmark harness is a program of its own above this one (it starts brokers and services with this very
    # command): ``locstream bench ...`` becomes ``python -m bench ...``, and nothing here imports it.
    os.execv(sys.executable, [sys.executable, "-m", "bench", *args.bench_args])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="locstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_broker = sub.add_parser("broker", help="run a local Kafka broker or cluster (Java 17 + Maven)")
    p_broker.add_argument("action", choices=["start", "stop", "status"])
    p_broker.add_argument("--data-dir", default=".data/broker")
    p_broker.add_argument("--port", type=int, default=9092, help="the first node's; node N uses port + 2(N-1)")
    p_broker.add_argument("--nodes", type=int, default=1, help="KRaft nodes, each broker and controller (voter)")
    p_broker.add_argument(
        "--tls", action="store_true", help="a TLS listener per node, certificates made in DATA_DIR/tls"
    )
    p_broker.add_argument(
        "--mtls",
        action="store_true",
        help="TLS listeners that ask clients for a certificate the CA signed (implies --tls)",
    )
    p_broker.set_defaults(func=cmd_broker)

    p_token = sub.add_parser("token", help="print a JWT signed with LOCSTREAM_JWT_SECRET")
    p_token.add_argument("--tenant", required=True)
    p_token.add_argument("--sub", required=True)
    p_token.add_argument("--role", required=True, choices=[role.value for role in Role])
    p_token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    p_token.set_defaults(func=cmd_token)

    for name, what in (
        ("producers", "the ingest API"),
        ("projector", "the projector"),
        ("ws-edge", "the WebSocket edge"),
        ("geofencer", "the geofence processor (job-site arrivals and departures)"),
    ):
        p_service = sub.add_parser(name, help=f"run {what}")
        if name == "projector":
            p_service.add_argument(
                "action",
                nargs="?",
                choices=["serve", "rebuild"],
                default="serve",
                help="rebuild: replay the topic into fresh tables and switch to them",
            )
        p_service.add_argument("--host", default=None)
        p_service.add_argument("--port", type=int, default=None)
        p_service.set_defaults(func=cmd_service)

    p_dev = sub.add_parser("dev", help="broker + all services on one port + a simulated fleet")
    p_dev.add_argument("--host", default="127.0.0.1")
    p_dev.add_argument("--port", type=int, default=8000)
    p_dev.add_argument("--broker-port", type=int, default=9092)
    p_dev.add_argument("--data-dir", default=".data")
    p_dev.add_argument(
        "--simulate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run a small simulated fleet (--no-simulate turns it off)",
    )
    p_dev.add_argument("--access-log", action="store_true", help="log every request (off: the simulator's would flood)")
    p_dev.set_defaults(func=cmd_dev)

    p_replay = sub.add_parser(
        "replay", help="export a tenant's location history of a time range from the topic (docs/replay.md)"
    )
    p_replay.add_argument("--tenant", required=True)
    p_replay.add_argument("--from", dest="start", required=True, help="ISO 8601 with offset, inclusive (append time)")
    p_replay.add_argument("--to", dest="end", required=True, help="ISO 8601 with offset, exclusive")
    p_replay.add_argument("--technician", action="append", help="only this technician (repeatable)")
    p_replay.add_argument("--format", default="ndjson", help="ndjson (default), csv, geojson, gpx or parquet")
    p_replay.add_argument(
        "--quality", default="good", help="good (default): the good fixes; flagged: only the flagged ones; all"
    )
    p_replay.add_argument("--out", help="file to write (written as FILE.partial until complete); default stdout")
    p_replay.add_argument("--token", help="an analyst's or admin's JWT of the tenant (default: $LOCSTREAM_TOKEN)")
    p_replay.set_defaults(func=cmd_replay)

    p_device = sub.add_parser("device", help="register, list or revoke a tracking app's device (docs/devices.md)")
    p_device.add_argument("action", choices=["add", "list", "revoke"])
    p_device.add_argument("device_id", nargs="?", help="revoke: the device id")
    p_device.add_argument("--tenant")
    p_device.add_argument("--technician", help="add: the technician the device sends for")
    p_device.add_argument("--label", default="", help="add: a name for it (a phone, a van)")
    p_device.add_argument("--server", default="http://127.0.0.1:8000", help="add: the URL the apps reach the API at")
    p_device.add_argument("--json", action="store_true", help="machine-readable output")
    p_device.set_defaults(func=cmd_device)

    p_label = sub.add_parser("tenant-label", help="the label that stands for a tenant in /metrics (a stable hash)")
    p_label.add_argument("tenant")
    p_label.set_defaults(func=cmd_tenant_label)

    p_bench = sub.add_parser("bench", help="run a benchmark scenario (python -m bench --help)", add_help=False)
    p_bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    p_bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # everything after "bench" is the harness's own command line
        return cmd_bench(argparse.Namespace(bench_args=argv[1:]))
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
