"""SQL over an experiment directory with DuckDB.

Two views are defined: ``replicates`` (the hive-partitioned dataset: condition,
replicate, seed, observable, value) and ``stats`` (per-condition statistics).
``metacoop query EXP_DIR "SQL"`` and :func:`query` run the same SQL.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metacoop.errors import InputError, Problem, path_argument
from metacoop.io.rundir import EXPERIMENT


def query(exp_dir: str | Path, sql: str) -> pd.DataFrame:
    """Run ``sql`` over the experiment in ``exp_dir``; return the result as a DataFrame."""
    import duckdb

    root = path_argument(exp_dir, "experiment")
    if not isinstance(sql, str):
        raise InputError([Problem("sql", sql, "an SQL query (str) over the views replicates and stats")])
    parts = root / "dataset"
    if not (root / EXPERIMENT).is_file() or not parts.is_dir():
        raise InputError([Problem("experiment", str(root), "is not an experiment directory "
                                                           f"(no {EXPERIMENT} and dataset/)")])
    con = duckdb.connect()
    try:
        glob = str(parts / "condition=*" / "*.parquet").replace("'", "''")
        if any(parts.glob("condition=*/*.parquet")):
            con.execute(f"CREATE VIEW replicates AS SELECT * FROM read_parquet('{glob}', "
                        "hive_partitioning = true)")
        else:
            con.execute("CREATE VIEW replicates AS SELECT NULL::VARCHAR AS condition, NULL::BIGINT AS "
                        "replicate, NULL::BIGINT AS seed, NULL::VARCHAR AS observable, "
                        "NULL::DOUBLE AS value WHERE false")
        stats = root / "stats.parquet"
        if stats.is_file():
            quoted = str(stats).replace("'", "''")
            con.execute(f"CREATE VIEW stats AS SELECT * FROM read_parquet('{quoted}')")
        try:
            return con.execute(sql).df()
        except duckdb.Error as exc:
            reason = f"DuckDB refused it: {str(exc).splitlines()[0]}"
            raise InputError([Problem("SQL", sql, reason)]) from None
    finally:
        con.close()
