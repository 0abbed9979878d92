"""The number of SQL statements a GraphQL request makes depends on the query's shape,
never on the number of rows (DataLoaders batch every nested list)."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event


@contextmanager
def count_queries(engine):
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


NESTED = "{ groups { name students { name guardians { name phone } } teachers { name } } }"


async def test_nested_groups_students_guardians_statement_count_is_flat(gql, app):
    engine = app.state.tavle.engine
    # Warm the tokens so logins are not counted.
    await gql.token("laerer.nordby.5a")
    await gql.token("kommuneadmin")
    with count_queries(engine) as few_rows:
        small = await gql.data("laerer.nordby.5a", NESTED)
    with count_queries(engine) as many_rows:
        large = await gql.data("kommuneadmin", NESTED)
    small_students = sum(len(g["students"]) for g in small["groups"])
    large_students = sum(len(g["students"]) for g in large["groups"])
    assert large_students > 20 * small_students
    # Token lookup, grants, current year, groups, students, guardians, teachers, field
    # permission: a fixed number, the same for 1 group and for every group.
    assert len(many_rows) == len(few_rows), (few_rows, many_rows)
    assert len(many_rows) <= 10


async def test_students_page_statement_count_does_not_grow_with_page_size(gql, app):
    query = """query($n: Int) { students(first: $n) { totalCount edges { node {
        name grade school { name } groups { name } guardians { name email }
        contactTeacher { name } } } } }"""
    engine = app.state.tavle.engine
    await gql.token("skoleadmin.nordby")
    with count_queries(engine) as five:
        await gql.data("skoleadmin.nordby", query, {"n": 5})
    with count_queries(engine) as hundred:
        data = await gql.data("skoleadmin.nordby", query, {"n": 100})
    assert len(data["students"]["edges"]) == 100
    assert len(five) == len(hundred)


PAGES = """query($first: Int, $after: String, $filter: StudentFilter) {
  students(first: $first, after: $after, filter: $filter) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id name } } } }"""


async def _walk(gql, username: str, first: int, filter: dict | None = None) -> list[str]:
    """Every student id of the listing, page by page."""
    seen: list[str] = []
    totals: set[int] = set()
    after = None
    while True:
        data = await gql.data(username, PAGES, {"first": first, "after": after, "filter": filter})
        page = data["students"]
        totals.add(page["totalCount"])  # a first page's from its rows, the others' counted
        assert len(totals) == 1, totals
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if page["edges"]:
            assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            assert len(seen) == page["totalCount"]
            return seen
        after = page["pageInfo"]["endCursor"]


async def test_pages_of_the_prepared_listing_cover_it_once(gql):
    """The unfiltered listing runs statements built once per caller, with the page size
    and cursor as parameters: pages of any size, for two callers, cover each listing
    exactly once, in the order a filtered listing (built per request) has too."""
    admin = await _walk(gql, "skoleadmin.nordby", 200)
    assert len(admin) == len(set(admin)) > 20
    assert await _walk(gql, "skoleadmin.nordby", 7) == admin
    assert await _walk(gql, "skoleadmin.nordby", 7, {"grade": None}) == admin
    everyone = await _walk(gql, "kommuneadmin", 200)
    assert set(admin) < set(everyone)
    assert await _walk(gql, "kommuneadmin", 50) == everyone
    nobody = await gql.data("skoleadmin.nordby", PAGES, {"first": 5, "filter": {"search": "qxz"}})
    assert nobody["students"]["totalCount"] == 0 and nobody["students"]["edges"] == []
    search = await _walk(gql, "skoleadmin.nordby", 3, {"search": "a"})
    assert search == [i for i in admin if i in set(search)]
    # The count of the unfiltered listing comes from the enrolments alone: it agrees
    # with the pages for every kind of scope (_walk checks totalCount at the end).
    for username in (
        "laerer.nordby.5a",
        "laerer.sorby.9b",
        "sfo.nordby",
        "rektor.sorby",
        "foresatt.hansen",
        "elev.noah.hansen",
    ):
        listed = await _walk(gql, username, 4)
        assert listed == await _walk(gql, username, 4, {"grade": None}), username
        assert listed, username


async def test_a_page_leaves_no_rows_for_the_garbage_collector(gql):
    """What a request loaded is freed when it ends, by reference counting: the loaders'
    caches (rows, objects, futures) are emptied (Context.release), so the collector's
    share of a page does not grow with the number of rows on it."""
    import gc

    query = """query($n: Int) { students(first: $n) { edges { node {
        name groups { name } guardians { name email } } } } }"""
    await gql.token("skoleadmin.nordby")

    async def garbage_of(page_size: int) -> int:
        await gql.data("skoleadmin.nordby", query, {"n": page_size})  # warm
        gc.collect()
        gc.disable()
        try:
            data = await gql.data("skoleadmin.nordby", query, {"n": page_size})
            assert len(data["students"]["edges"]) == page_size
            del data
            return gc.collect()
        finally:
            gc.enable()

    small, large = await garbage_of(5), await garbage_of(60)
    # Before the loaders were emptied, each student left ~9 objects in cycles.
    assert large - small < 30, (small, large)
