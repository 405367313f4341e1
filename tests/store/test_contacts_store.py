"""The address book's store, specified once for SQLite, PostgreSQL and MariaDB: people, the department
tree, groups, tags, import by mobile and resolving an organiser's choice into attendees."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import sqlalchemy as sa

from masd.modules.contacts import importer
from masd.modules.contacts import store as book
from masd.modules.contacts.model import Attendee, ContactConflict, ContactNotFound, InvalidContact
from masd.modules.contacts.tables import people
from masd.store.db import Database

T = TypeVar("T")
NOW = 1_800_000_000.0


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def write(db: Database, fn: Callable[[sa.Connection], T]) -> T:
    return db.write_sync(fn)


def read(db: Database, fn: Callable[[sa.Connection], T]) -> T:
    return db.read_sync(fn)


def add(db: Database, name: str, mobile: str, **kw: object) -> int:
    return write(db, lambda c: book.add_person(c, name=name, mobile=mobile, now=NOW, **kw))  # type: ignore[arg-type]


def names(rows: list[dict[str, object]]) -> set[object]:
    return {r["name"] for r in rows}


def test_a_person_is_stored_with_a_normalised_mobile_and_a_department_path(db: Database) -> None:
    pid = add(db, "张三", "+86 138-0013-8000", department="市政府 > 办公室 / 秘书科", tags="党员，值班")
    p = read(db, lambda c: book.get_person(c, pid))
    assert p["mobile"] == "13800138000" and p["department"] == "市政府/办公室/秘书科"
    assert p["tags"] == sorted(["党员", "值班"])


def test_adding_a_department_path_makes_its_parents(db: Database) -> None:
    add(db, "张三", "13800138000", department="市政府/办公室/秘书科")
    paths = [d["path"] for d in read(db, book.list_departments)]
    assert paths == ["市政府", "市政府/办公室", "市政府/办公室/秘书科"]


def test_a_mobile_already_in_the_book_is_refused_naming_its_owner(db: Database) -> None:
    add(db, "张三", "13800138000")
    with pytest.raises(ContactConflict) as e:
        add(db, "李四", "8613800138000")
    assert e.value.field == "mobile" and "张三" in e.value.reason


def test_an_invalid_mobile_is_refused_with_the_reason(db: Database) -> None:
    with pytest.raises(InvalidContact) as e:
        add(db, "张三", "12345")
    assert e.value.field == "mobile" and "mainland mobile" in e.value.reason


def test_a_person_is_found_by_mobile_in_any_written_form(db: Database) -> None:
    add(db, "张三", "13800138000")
    assert names(read(db, lambda c: book.find_people(c, mobile="+86 138 0013 8000"))) == {"张三"}


def test_search_matches_part_of_a_name_in_any_case(db: Database) -> None:
    add(db, "Zhang San", "13800138000")
    add(db, "Li Si", "13900139000")
    assert names(read(db, lambda c: book.find_people(c, search="zhang"))) == {"Zhang San"}


def test_search_matches_digits_of_a_mobile(db: Database) -> None:
    add(db, "张三", "13800138000")
    add(db, "李四", "13900139000")
    assert names(read(db, lambda c: book.find_people(c, search="0013 8"))) == {"张三"}


def test_a_department_filter_includes_its_sub_departments(db: Database) -> None:
    add(db, "张三", "13800138000", department="市政府/办公室/秘书科")
    add(db, "李四", "13900139000", department="市政府/办公室")
    add(db, "王五", "13700137000", department="市政府/财政局")
    assert names(read(db, lambda c: book.find_people(c, department="市政府/办公室"))) == {"张三", "李四"}


def test_a_department_name_with_a_like_wildcard_matches_only_itself(db: Database) -> None:
    add(db, "张三", "13800138000", department="a_b/x")
    add(db, "李四", "13900139000", department="acb/x")
    assert names(read(db, lambda c: book.find_people(c, department="a_b"))) == {"张三"}


def test_people_are_found_by_tag_and_by_group(db: Database) -> None:
    add(db, "张三", "13800138000", tags=["值班"], groups=["办公会"])
    add(db, "李四", "13900139000", tags=["党员"])
    assert names(read(db, lambda c: book.find_people(c, tag="值班"))) == {"张三"}
    assert names(read(db, lambda c: book.find_people(c, group="办公会"))) == {"张三"}


def test_group_names_differing_only_in_case_are_two_groups(db: Database) -> None:
    write(db, lambda c: book.add_group(c, "IT", now=NOW))
    write(db, lambda c: book.add_group(c, "it", now=NOW))
    assert [g["name"] for g in read(db, book.list_groups)] == ["IT", "it"]


def test_an_update_changes_only_what_is_given(db: Database) -> None:
    pid = add(db, "张三", "13800138000", department="办公室", title="科员", tags="a,b")
    write(db, lambda c: book.update_person(c, pid, now=NOW + 1, title="科长", tags=["c"]))
    p = read(db, lambda c: book.get_person(c, pid))
    assert (p["title"], p["tags"], p["department"], p["updated_at"]) == ("科长", ["c"], "办公室", NOW + 1)


def test_an_update_with_the_same_details_changes_nothing(db: Database) -> None:
    pid = add(db, "张三", "13800138000", title="科长", groups=["办公会"])
    changed = write(db, lambda c: book.update_person(c, pid, now=NOW + 1, title="科长", groups=["办公会"]))
    assert changed is False and read(db, lambda c: book.get_person(c, pid))["updated_at"] == NOW


def test_changing_a_mobile_to_one_taken_is_refused(db: Database) -> None:
    add(db, "张三", "13800138000")
    pid = add(db, "李四", "13900139000")
    with pytest.raises(ContactConflict):
        write(db, lambda c: book.update_person(c, pid, now=NOW, mobile="13800138000"))


def test_removing_a_person_removes_their_memberships(db: Database) -> None:
    pid = add(db, "张三", "13800138000", groups=["办公会"], tags="值班")
    write(db, lambda c: book.remove_person(c, pid))
    assert read(db, book.list_groups)[0]["members"] == 0
    with pytest.raises(ContactNotFound):
        read(db, lambda c: book.get_person(c, "13800138000"))


def test_a_department_with_people_cannot_be_removed(db: Database) -> None:
    add(db, "张三", "13800138000", department="办公室")
    with pytest.raises(ContactConflict, match="still has 1 person"):
        write(db, lambda c: book.remove_department(c, "办公室"))


def test_a_department_with_sub_departments_cannot_be_removed(db: Database) -> None:
    write(db, lambda c: book.add_department(c, "市政府/办公室", now=NOW))
    with pytest.raises(ContactConflict, match="sub-departments"):
        write(db, lambda c: book.remove_department(c, "市政府"))


def test_an_empty_department_is_removed(db: Database) -> None:
    write(db, lambda c: book.add_department(c, "市政府/办公室", now=NOW))
    write(db, lambda c: book.remove_department(c, "市政府/办公室"))
    assert [d["path"] for d in read(db, book.list_departments)] == ["市政府"]


def test_renaming_a_department_moves_the_paths_below_it(db: Database) -> None:
    add(db, "张三", "13800138000", department="市政府/办公室/秘书科")
    write(db, lambda c: book.rename_department(c, "市政府/办公室", "综合办"))
    assert read(db, lambda c: book.get_person(c, "13800138000"))["department"] == "市政府/综合办/秘书科"


def test_the_department_tree_counts_people_below_each_node(db: Database) -> None:
    add(db, "张三", "13800138000", department="市政府/办公室/秘书科")
    add(db, "李四", "13900139000", department="市政府/办公室")
    (root,) = book.department_tree(read(db, book.list_departments))
    assert (root["path"], root["people"], root["total"]) == ("市政府", 0, 2)
    (office,) = root["children"]
    assert (office["people"], office["total"], office["children"][0]["total"]) == (1, 2, 1)


def test_group_members_are_added_once_and_removed(db: Database) -> None:
    add(db, "张三", "13800138000")
    add(db, "李四", "13900139000")
    write(db, lambda c: book.add_group(c, "办公会", now=NOW))
    assert write(db, lambda c: book.add_members(c, "办公会", ["13800138000", "13900139000"], now=NOW)) == 2
    assert write(db, lambda c: book.add_members(c, "办公会", ["13800138000"], now=NOW)) == 0
    assert write(db, lambda c: book.remove_members(c, "办公会", ["13900139000"])) == 1
    assert names(read(db, lambda c: book.find_people(c, group="办公会"))) == {"张三"}


def test_adding_an_unknown_person_to_a_group_names_which_one(db: Database) -> None:
    write(db, lambda c: book.add_group(c, "办公会", now=NOW))
    with pytest.raises(ContactNotFound) as e:
        write(db, lambda c: book.add_members(c, "办公会", ["13800138000"], now=NOW))
    assert e.value.field == "people[0]"


# ----- resolve ------------------------------------------------------------------------------------------


def test_resolve_gives_each_mobile_once_across_people_departments_groups_and_numbers(db: Database) -> None:
    a = add(db, "张三", "13800138000", department="市政府/办公室/秘书科", groups=["办公会"])
    b = add(db, "李四", "13900139000", department="市政府/办公室")
    add(db, "王五", "13700137000", department="市政府/财政局")
    found = read(
        db,
        lambda c: book.resolve(
            c,
            people=[a],
            departments=["市政府/办公室"],
            groups=["办公会"],
            numbers=["13900139000", "13500135000"],
        ),
    )
    assert found == [
        Attendee(a, "张三", "13800138000", "市政府/办公室/秘书科"),
        Attendee(b, "李四", "13900139000", "市政府/办公室"),
        Attendee(None, "", "13500135000", ""),
    ]


def test_resolve_makes_a_bare_number_in_the_book_its_person(db: Database) -> None:
    a = add(db, "张三", "13800138000", department="办公室")
    assert read(db, lambda c: book.resolve(c, numbers=["+86 13800138000"])) == [
        Attendee(a, "张三", "13800138000", "办公室")
    ]


def test_resolve_names_an_unknown_department_by_its_position(db: Database) -> None:
    write(db, lambda c: book.add_department(c, "办公室", now=NOW))
    with pytest.raises(ContactNotFound) as e:
        read(db, lambda c: book.resolve(c, departments=["办公室", "财政局"]))
    assert e.value.field == "departments[1]"


def test_resolve_names_an_invalid_number_by_its_position(db: Database) -> None:
    with pytest.raises(InvalidContact) as e:
        read(db, lambda c: book.resolve(c, numbers=["13800138000", "123"]))
    assert e.value.field == "numbers[1]"


# ----- import -------------------------------------------------------------------------------------------

FILE = (
    "姓名,手机,部门,职务,标签,分组\n"
    '张三,13800138000,市政府/办公室/秘书科,科长,"党员,值班",办公会\n'
    "李四,13900139000,市政府/办公室,,,办公会\n"
).encode("gbk")


def apply(db: Database, data: bytes, **kw: object) -> importer.ImportPlan:
    parsed = importer.parse_file(data)
    return write(db, lambda c: book.apply_import(c, parsed, now=NOW, **kw))  # type: ignore[arg-type]


def test_an_import_adds_people_with_departments_tags_and_groups(db: Database) -> None:
    plan = apply(db, FILE)
    assert len(plan.add) == 2
    p = read(db, lambda c: book.get_person(c, "13800138000"))
    assert (p["department"], sorted(p["tags"]), p["groups"]) == (
        "市政府/办公室/秘书科",
        ["值班", "党员"],
        ["办公会"],
    )
    assert read(db, book.list_groups)[0]["members"] == 2


def test_importing_the_same_file_again_changes_nothing(db: Database) -> None:
    apply(db, FILE)
    before = read(db, lambda c: book.find_people(c))
    again = apply(db, FILE)
    assert (len(again.add), len(again.update), len(again.unchanged)) == (0, 0, 2)
    assert read(db, lambda c: book.find_people(c)) == before


def test_an_import_updates_people_by_mobile(db: Database) -> None:
    apply(db, FILE)
    plan = apply(db, "姓名,手机,职务,分组\n张三,13800138000,处长,\n".encode())
    assert plan.update[0].changes == {"title": ("科长", "处长"), "groups": (("办公会",), ())}
    p = read(db, lambda c: book.get_person(c, "13800138000"))
    assert (p["title"], p["groups"], p["department"]) == ("处长", [], "市政府/办公室/秘书科")


def test_an_import_with_a_bad_row_writes_nothing(db: Database) -> None:
    with pytest.raises(book.InvalidRows) as e:
        apply(db, FILE + "王五,12345,,,,\n".encode())
    assert [i.line for i in e.value.plan.issues] == [4]
    assert read(db, lambda c: c.execute(sa.select(sa.func.count()).select_from(people)).scalar_one()) == 0
    assert read(db, book.list_departments) == []


def test_an_import_may_leave_the_bad_rows_out(db: Database) -> None:
    plan = apply(db, FILE + "王五,12345,,,,\n".encode(), skip_invalid=True)
    assert len(plan.add) == 2 and len(plan.issues) == 1
    assert read(db, lambda c: book.count_people(c)) == 2


def test_an_export_imported_again_changes_nothing(db: Database) -> None:
    apply(db, FILE)
    add(db, "Wang", "+4915112345678", title="=1+1")
    for write_file in (importer.write_csv, importer.write_xlsx):
        data = write_file(read(db, book.export_people))
        plan = read(db, lambda c: book.preview_import(c, importer.parse_file(data)))
        assert (len(plan.add), len(plan.update), len(plan.unchanged), plan.issues) == (0, 0, 3, [])


def test_an_id_too_large_for_the_database_is_simply_not_found(db: Database) -> None:
    huge = "9" * 23
    for call in (
        lambda c: book.get_person(c, huge),
        lambda c: book.get_department(c, huge),
        lambda c: book.get_group(c, huge),
        lambda c: book.get_group(c, 2**70),
    ):
        with pytest.raises(ContactNotFound):
            db.read_sync(call)
