"""The layout rules of docs/architecture.md, checked on the tree: every
source file is described there, SQL goes through the store, and core
headers do not pull in the network libraries."""
import re

from conftest import ROOT

SOURCE_DIRS = ["src", "src/cli", "src/net", "src/api", "tasks"]


def sources():
    for d in SOURCE_DIRS:
        for p in sorted((ROOT / d).iterdir()):
            if p.suffix in (".c", ".h"):
                yield p


def test_every_source_file_is_in_the_architecture_doc():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for p in sources():
        stem = p.stem
        # `name.c`, `name.h` or `name.*` in the table of its folder
        if not re.search(r"`%s\.(c|h|\*)`" % re.escape(stem), doc):
            missing.append(str(p.relative_to(ROOT)))
    assert not missing, "not described in docs/architecture.md: %s" % missing


def test_sql_only_through_the_store():
    for p in sources():
        text = p.read_text()
        rel = str(p.relative_to(ROOT))
        if rel.startswith("src/store.") or rel.startswith("src/store_pg."):
            continue
        assert "<sqlite3.h>" not in text, rel
        assert "<libpq-fe.h>" not in text, rel
        for word in ("BEGIN", "COMMIT", "ROLLBACK"):
            assert not re.search(r'"[^"\n]*\b%s\b' % word, text), (rel, word)


def test_no_sql_built_with_printf():
    pattern = re.compile(r'printf\s*\([^;]*"\s*(SELECT|INSERT|UPDATE|DELETE)\b', re.S)
    for p in sources():
        assert not pattern.search(p.read_text()), str(p.relative_to(ROOT))


def test_core_headers_do_not_include_network_libraries():
    for d in ("src", "src/cli", "src/api", "tasks"):
        for p in (ROOT / d).glob("*.h"):
            text = p.read_text()
            for lib in ("libssh2.h", "curl/curl.h", "git2.h", "openssl/"):
                assert lib not in text, (str(p.relative_to(ROOT)), lib)
