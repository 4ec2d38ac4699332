"""Our patches to mongoeco 4.11.0's wire server, applied by :func:`patch_mongoeco` when we serve it.

They live apart so each can be read, and tested (tests/integration/test_mongoeco_patches.py has one
test per patch), on its own. Runs only under ``.venv-mongo``: mongoeco is imported inside the function.
"""

from __future__ import annotations

from typing import Any


def patch_mongoeco() -> list[str]:  # noqa: PLR0915 - one patch set, its invariants read in one place
    """Fix the mongoeco 4.11.0 defects our store hits; returns the names of the patches applied.

    Found with tests/integration/test_mongo_backend_contract.py and a profiler (docs/mongodb-backend.md).
    Without them, loading N documents costs O(N^2): 2,000 inserts took ~110 s here.

    - ``unique-_id-scan``: every insert and upsert decoded the whole collection to compare ``_id``
      values. That scan exists for numeric ``_id`` values (1, 1.0 and Int64(1) are one key); the same
      function already runs it for those by itself, so for any other ``_id`` the exact storage-key
      lookup it also does is the whole check.
      A numeric ``_id`` (``movie_id``) is checked by looking up the storage keys of its int, float
      and Int64 forms instead (a Decimal128 ``_id`` equal to a stored number is not detected).
    - ``numeric-unique-scan``: a unique index on a numeric field (``movie_id``) was checked by decoding
      every document, because files written by older mongoeco versions lack numeric index rows. Files
      written by this pinned version have them (with one normalised key for 1, 1.0 and Int64(1)), so
      we answer from the index rows, as mongoeco already does for strings.
    - ``feature-scans``: "does any document have an array / a tagged value (Decimal128, datetime ...)
      at this path" is a full-table ``json_*`` scan whose cached answer mongoeco drops after every
      write. A write can turn "none" into "some" only by writing a document that itself has such a
      value on that path; every write passes its final document to the unique-index check, so we keep
      the negative answers and forget them there (and on any drop or rename, which move documents
      without writing them).
    - ``indexed-miss``: an upsert whose filter is ``{field: value}`` on an indexed field looks the value
      up in the index, and on a miss (every new user, event or movie) falls back to a full-table scan.
      When the index has no entry and no stored document holds an array on that field (known from the
      feature scans above), a scan can find nothing either: we stop there. A filter with
      ``_id: value`` (alone or with more conditions; with a number it always scanned) finds its one
      candidate by storage keys, as above, and matches the rest of the filter on it.
    - ``no-change-dispatch``: after every write mongoeco delivers its change-stream outbox, starting a
      heartbeat thread and committing a lease three times, which is half the cost of a write. We do
      not use change streams (``watch``), so delivery is switched off; the outbox stays capped at
      its 10,000 entries by mongoeco itself.
    - ``admin-renameCollection``: pymongo sends ``renameCollection`` to ``admin`` with full namespaces,
      as MongoDB requires, but mongoeco accepts it only on the collection's own database.

    Each patch wraps the method it replaces by name, so a mongoeco upgrade that renames one fails at
    start-up instead of silently running unpatched.
    """
    import dataclasses
    import math

    from bson.int64 import Int64
    from mongoeco.api._async._collection_runtime import CollectionRuntimeCoordinator
    from mongoeco.core.bson_scalars import is_bson_numeric
    from mongoeco.core.filtering import QueryEngine
    from mongoeco.core.identity import id_contains_numeric_value
    from mongoeco.core.paths import get_document_value
    from mongoeco.engines._sqlite_read_fast_path_runtime import _find_scalar_index
    from mongoeco.engines.sqlite import SQLiteEngine, sqlite_read_scope
    from mongoeco.wire import _executor_passthrough

    engine: Any = SQLiteEngine
    validate = engine._validate_document_against_unique_indexes
    scalar_conflict = engine._unique_index_conflict_via_scalar_entries
    array_paths = engine._array_paths_for_index_field
    select_first = engine._select_first_document_for_plan
    passthrough = _executor_passthrough._execute_authenticated_passthrough_command
    plain_types = (str, int, float, bool, type(None))
    # (database, collection) -> features (scan name, *arguments) known to be absent from every document.
    absent: dict[tuple[str, str], set[tuple[str, ...]]] = {}

    def may_introduce(document: Any, feature: tuple[str, ...]) -> bool:
        field = feature[1]
        if array_paths(document, field):
            return True
        if feature[0] == "tagged":
            found, value = get_document_value(document, field)
            return bool(found) and type(value) not in plain_types
        return False

    def checked_write(self: Any, db_name: str, coll_name: str, document: Any, **options: Any) -> Any:
        with self._lock:
            known = absent.get((db_name, coll_name))
            if known:
                known.difference_update([feature for feature in known if may_introduce(document, feature)])
        document_id = document.get("_id")
        if "_id" in document and not options.get("skip_id_check") and is_scalar_number(document_id):
            for key in equal_number_keys(self, document_id):
                if key != options.get("exclude_storage_key") and stored(self, db_name, coll_name, key):
                    message = f"Duplicate key: _id={document_id}"
                    raise self._unique_key_error(message, f"{db_name}.{coll_name}", document)
            options["skip_id_check"] = True  # checked above, by lookups instead of a scan
        elif options.get("scan_payload_id") and not id_contains_numeric_value(document_id):
            options["scan_payload_id"] = False
        return validate(self, db_name, coll_name, document, **options)

    def is_scalar_number(value: Any) -> bool:
        return type(value) in (int, float, Int64) and math.isfinite(value)

    def equal_number_keys(self: Any, value: Any) -> set[str]:
        """The storage keys of every int, float and Int64 equal to ``value`` (stored ids are typed)."""
        if value != int(value):
            return {self._storage_key(float(value))}
        whole = int(value)
        keys = {self._storage_key(whole), self._storage_key(float(whole))}
        if -(2**63) <= whole < 2**63:
            keys.add(self._storage_key(Int64(whole)))
        return keys

    def stored(self: Any, db_name: str, coll_name: str, key: str) -> bool:
        row = self._require_connection().execute(
            "SELECT 1 FROM documents WHERE db_name = ? AND coll_name = ? AND storage_key = ? LIMIT 1",
            (db_name, coll_name, key),
        )
        return row.fetchone() is not None

    def numeric_conflict_from_index_rows(
        self: Any, conn: Any, collection_id: Any, index: Any, document: Any, *, exclude_storage_key: Any
    ) -> Any:
        answer = scalar_conflict(
            self, conn, collection_id, index, document, exclude_storage_key=exclude_storage_key
        )
        physical_name = index.get("scalar_physical_name")
        if answer is not None or collection_id is None or not physical_name:
            return answer
        field = index["fields"][0]
        found, value = get_document_value(document, field)
        signature = self._scalar_value_signature_for_document(document, field)
        if (
            not (found and is_bson_numeric(value))
            or signature is None
            or not self._supports_scalar_index(index)
        ):
            return None
        element_type, element_key = signature
        sql = (
            f"SELECT 1 FROM scalar_index_entries INDEXED BY {self._quote_identifier(str(physical_name))} "
            "WHERE collection_id = ? AND index_name = ? AND type_score = ? AND element_key = ?"
        )
        params = [collection_id, str(index["name"]), self._multikey_type_score(element_type), element_key]
        if exclude_storage_key is not None:
            sql += " AND storage_key != ?"
            params.append(exclude_storage_key)
        return conn.execute(sql + " LIMIT 1", tuple(params)).fetchone() is not None

    def id_equality(plan: Any) -> Any:
        """The value of a top-level ``_id: value`` clause (str or number), else None."""
        clauses = plan.clauses if type(plan).__name__ == "AndCondition" else (plan,)
        for clause in clauses:
            if (
                type(clause).__name__ == "EqualsCondition"
                and clause.field == "_id"
                and (type(clause.value) is str or is_scalar_number(clause.value))
            ):
                return clause.value
        return None

    def final_indexed_miss(self: Any, db_name: str, coll_name: str, plan: Any, **options: Any) -> Any:
        document_id = id_equality(plan) if options.get("hint") is None else None
        if document_id is not None:
            # Stored ids are keyed by type and value, and _id is unique: at most one candidate.
            if is_scalar_number(document_id):
                keys = sorted(equal_number_keys(self, document_id))
            else:
                keys = [self._storage_key(document_id)]
            conn = self._require_connection(options.get("context"))
            with self._bind_connection(conn), sqlite_read_scope(conn):  # as the method we replace does
                row = conn.execute(
                    "SELECT storage_key, document FROM documents WHERE db_name = ? AND coll_name = ? "
                    f"AND storage_key IN ({', '.join('?' for _ in keys)}) LIMIT 1",
                    (db_name, coll_name, *keys),
                ).fetchone()
            if row is None:
                return None
            candidate = self._deserialize_document(row[1])
            return (row[0], candidate) if QueryEngine.match_plan(candidate, plan) else None
        field, value = getattr(plan, "field", ""), getattr(plan, "value", None)
        if (
            type(plan).__name__ == "EqualsCondition"
            and not plan.null_matches_undefined
            and options.get("hint") is None
            and type(value) in (str, int)
            and "." not in field
            and _find_scalar_index(self, db_name, coll_name, field) is not None
        ):
            with self._lock:  # the array check and the lookup see the same state (see remembered)
                arrays = self._field_is_top_level_array_in_collection(db_name, coll_name, field)
                if (
                    not arrays
                    and self._select_first_document_for_scalar_index(
                        db_name, coll_name, field=field, value=value
                    )
                    is None
                ):
                    return None
        return select_first(self, db_name, coll_name, plan, **options)

    def remembering(name: str, kind: str) -> None:
        scan = getattr(engine, name)

        def remembered(self: Any, db_name: str, coll_name: str, *arguments: str) -> Any:
            feature = (kind, *arguments)
            # Writes hold the engine's (reentrant) lock from the unique-index check to the commit, so
            # holding it here keeps a scan from interleaving with a write it would miss.
            with self._lock:
                known = absent.setdefault((db_name, coll_name), set())
                if feature in known:
                    return False
                found = scan(self, db_name, coll_name, *arguments)
                if not found:
                    known.add(feature)
                return found

        setattr(engine, name, remembered)

    def forgetting(name: str) -> None:
        method = getattr(engine, name)

        async def forget_then_run(*args: Any, **kwargs: Any) -> Any:
            absent.clear()
            try:
                return await method(*args, **kwargs)
            finally:
                absent.clear()  # again: a scan may have run between the first clear and the move

        setattr(engine, name, forget_then_run)

    async def passthrough_on_own_database(context: Any, **options: Any) -> Any:
        namespace = context.command_document.get("renameCollection")
        if context.db_name == "admin" and isinstance(namespace, str) and "." in namespace:
            context = dataclasses.replace(context, db_name=namespace.partition(".")[0])
        return await passthrough(context, **options)

    engine._validate_document_against_unique_indexes = checked_write
    engine._unique_index_conflict_via_scalar_entries = numeric_conflict_from_index_rows
    engine._select_first_document_for_plan = final_indexed_miss
    remembering("_field_is_top_level_array_in_collection", "array")
    remembering("_field_traverses_array_in_collection", "array")
    remembering("_field_contains_tagged_value_type_in_collection", "tagged")
    for name in ("drop_database", "drop_collection", "rename_collection"):
        forgetting(name)
    _executor_passthrough._execute_authenticated_passthrough_command = passthrough_on_own_database
    runtime: Any = CollectionRuntimeCoordinator
    runtime._dispatch_engine_changes  # noqa: B018 - fails loudly if an upgrade renamed it
    runtime._dispatch_engine_changes = lambda self, operation_context=None: None
    return [
        "unique-_id-scan",
        "numeric-unique-scan",
        "feature-scans",
        "indexed-miss",
        "no-change-dispatch",
        "admin-renameCollection",
    ]
