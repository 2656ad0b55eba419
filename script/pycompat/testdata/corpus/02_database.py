import json

start_all()
db.wait_for_unit("postgresql.service")
db.wait_for_open_port(5432)


def psql(query: str, database: str = "postgres") -> str:
    """Run a query as the postgres user and return its output."""
    return db.succeed(
        f"sudo -u postgres psql -d {database} -tAc \"{query}\""
    ).strip()


with subtest("create a table and insert rows"):
    psql("CREATE TABLE sth (id int, name text);")
    for i in range(1, 4):
        psql(f"INSERT INTO sth VALUES ({i}, 'row{i}');")
    count = int(psql("SELECT count(*) FROM sth;"))
    assert count == 3, f"expected 3 rows, found {count}"

with subtest("json output"):
    out = psql("SELECT json_agg(sth) FROM sth;")
    rows = json.loads(out)
    names = [r["name"] for r in rows]
    assert names == ["row1", "row2", "row3"], names

# The count from the first subtest is still known here.
print(f"rows: {count}, last: {rows[-1]['id']}")

with subtest("backup service"):
    db.start_job("postgresqlBackup-postgres.service")
    db.wait_for_unit("postgresqlBackup-postgres.service")
    db.succeed("test -s /var/backup/postgresql/postgres.sql.gz")
