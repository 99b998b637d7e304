#!/usr/bin/env python3
"""Run DuckDB SQL against an S3-compatible endpoint (e.g. moto_server), offline.

httpfs is LOADed from the pinned `duckdb-extension-httpfs` wheel; extension
auto-install and auto-load are off, so DuckDB never downloads anything.
`{bucket}` in the SQL is replaced by --bucket. Output: one JSON object per row.
"""
import argparse, base64, datetime, decimal, json, pathlib, sys, time, uuid


def httpfs_path(duckdb):
    import duckdb_extension_httpfs  # pip: duckdb-extension-httpfs==<same as duckdb>
    root = pathlib.Path(duckdb_extension_httpfs.__file__).parent / "extensions"
    path = root / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    if not path.is_file():
        have = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        raise RuntimeError(f"no httpfs build for duckdb v{duckdb.__version__} in {root} "
                           f"(wheel has {have}); pin duckdb and duckdb-extension-httpfs to one version")
    return path


def to_json(v):
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, datetime.timedelta):
        return v.total_seconds()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    raise TypeError(f"cannot encode {type(v).__name__} as JSON")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True, help="HOST:PORT of the S3 endpoint, no scheme")
    ap.add_argument("--bucket", required=True, help="substituted for {bucket} in --sql")
    ap.add_argument("--sql", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--key-id", default="test")
    ap.add_argument("--secret", default="test")
    ap.add_argument("--ssl", action="store_true", help="use https (default: plain http)")
    ap.add_argument("--timing", action="store_true",
                    help="print the query's wall time (s) to stderr as 'query_s: N'")
    a = ap.parse_args(argv)
    if "://" in a.endpoint:  # DuckDB wants bare HOST:PORT; "http://h:p" would give "http://http://h:p"
        scheme, a.endpoint = a.endpoint.split("://", 1)
        a.ssl = scheme == "https"
    try:
        import duckdb
        con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                     "autoload_known_extensions": False,
                                     "allow_unsigned_extensions": False})
        con.execute(f"LOAD '{httpfs_path(duckdb)}'")
        q = lambda s: "'" + s.replace("'", "''") + "'"
        con.execute(f"CREATE SECRET s3_test (TYPE S3, KEY_ID {q(a.key_id)}, SECRET {q(a.secret)}, "
                    f"REGION {q(a.region)}, ENDPOINT {q(a.endpoint)}, URL_STYLE 'path', "
                    f"USE_SSL {'true' if a.ssl else 'false'})")
        started = time.perf_counter()
        rel = con.sql(a.sql.replace("{bucket}", a.bucket))
        if rel is None:  # statement without a result set
            return 0
        cols, types = rel.columns, [str(t) for t in rel.types]
        tz = [i for i, t in enumerate(types) if t == "TIMESTAMP WITH TIME ZONE"]
        if tz:  # python's TIMESTAMPTZ conversion needs pytz: hand over UTC wall time instead
            qi = lambda c: '"' + c.replace('"', '""') + '"'
            rel = rel.project(", ".join(f"timezone('UTC', {qi(c)}) AS {qi(c)}" if i in tz else qi(c)
                                        for i, c in enumerate(cols)))
        while rows := rel.fetchmany(1000):
            for row in rows:
                row = [v.replace(tzinfo=datetime.timezone.utc) if i in tz and v is not None else v
                       for i, v in enumerate(row)]
                sys.stdout.write(json.dumps(dict(zip(cols, row)), default=to_json, allow_nan=False) + "\n")
        sys.stdout.flush()
        if a.timing:
            print(f"query_s: {time.perf_counter() - started:.3f}", file=sys.stderr)
        return 0
    except Exception as e:  # noqa: BLE001 - any failure is reported and exits 1
        print(f"query_s3: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
