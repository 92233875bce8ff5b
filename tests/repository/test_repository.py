"""AsyncRepository: model inference, reads and single-row writes against real databases."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from contextlib import aclosing
from typing import Any, Generic, TypeVar

import pytest
from pydantic import BaseModel
from sqlalchemy import ForeignKey, MetaData, String, Uuid, func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    MappedAsDataclass,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)
from typing_extensions import assert_type

from sqla_uow import (
    AsyncRepository,
    ConflictError,
    InvalidFieldError,
    MultipleResultsError,
    NotFoundError,
)
from sqla_uow._repository import ModelT


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "repo_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str | None] = mapped_column(String(50))
    balance: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.current_timestamp())
    edited_at: Mapped[dt.datetime | None] = mapped_column(onupdate=func.current_timestamp())
    notes: Mapped[list[Note]] = relationship(back_populates="account", passive_deletes="all")

    @property
    def display(self) -> str:
        return self.name or self.email


class Note(Base):
    __tablename__ = "repo_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("repo_account.id", ondelete="RESTRICT"))
    text: Mapped[str] = mapped_column(String(200))
    account: Mapped[Account] = relationship(back_populates="notes")


class Membership(Base):
    __tablename__ = "repo_membership"

    group_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    member_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    role: Mapped[str] = mapped_column(String(20))


class DataclassBase(MappedAsDataclass, DeclarativeBase):
    metadata = Base.metadata


class Tag(DataclassBase):
    __tablename__ = "repo_tag"

    id: Mapped[int] = mapped_column(primary_key=True, init=False)
    label: Mapped[str] = mapped_column(String(20))
    uses: Mapped[int] = mapped_column(default=0)


class Unmapped:
    pass


class AccountRepository(AsyncRepository[Account]):
    async def get_by_email(self, email: str) -> Account | None:
        return await self.find_one(email=email)


class NoteRepository(AsyncRepository[Note]):
    pass


class MembershipRepository(AsyncRepository[Membership]):
    pass


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
def accounts(session: AsyncSession) -> AccountRepository:
    return AccountRepository(session)


@pytest.fixture
async def ann(accounts: AccountRepository, session: AsyncSession) -> Account:
    account = await accounts.create(email="ann@example.com", name="Ann")
    await accounts.create(email="bob@example.com", name="Bob")
    await accounts.create(email="cy@example.com", name=None)
    await session.commit()
    return account


async def stored(engine: AsyncEngine, column: Any = Account.email) -> list[Any]:
    """The committed values of *column*, read on a connection of its own."""
    async with engine.connect() as conn:
        return sorted((await conn.execute(select(column))).scalars().all())


_T = TypeVar("_T")


class GenericRepository(AsyncRepository[ModelT], Generic[ModelT]):
    async def first(self) -> ModelT | None:
        found = await self.list(limit=1, order_by=self._pk_names[0])
        return found[0] if found else None


class TwoParamRepository(AsyncRepository[ModelT], Generic[_T, ModelT]):
    pass


class TestModelInference:
    def test_model_comes_from_the_type_argument(self, session: AsyncSession) -> None:
        repo = AccountRepository(session)
        assert repo.model is Account
        assert repo.session is session

    def test_model_comes_through_an_intermediate_generic_subclass(
        self, session: AsyncSession
    ) -> None:
        class AccountRepo(GenericRepository[Account]):
            pass

        class NoteRepo(TwoParamRepository[int, Note]):
            pass

        class SpecialAccountRepo(AccountRepo):
            pass

        assert AccountRepo(session).model is Account
        assert NoteRepo(session).model is Note
        assert SpecialAccountRepo(session).model is Account

    def test_model_class_attribute_is_used(self, session: AsyncSession) -> None:
        class NoteRepo(AsyncRepository[Any]):
            model = Note

        assert NoteRepo(session).model is Note

    def test_model_keyword_is_used(self, session: AsyncSession) -> None:
        assert AsyncRepository(session, model=Note).model is Note

    def test_repository_without_model_raises_type_error(self, session: AsyncSession) -> None:
        with pytest.raises(TypeError, match="GenericRepository has no model"):
            GenericRepository(session)
        with pytest.raises(TypeError, match="AsyncRepository has no model"):
            AsyncRepository(session)

    def test_unmapped_model_raises_type_error(self, session: AsyncSession) -> None:
        class Bad(AsyncRepository[Unmapped]):
            pass

        with pytest.raises(TypeError, match="is not a mapped class"):
            Bad(session)

    async def test_generic_helper_methods_work_on_the_bound_model(
        self, session: AsyncSession, ann: Account
    ) -> None:
        class AccountRepo(GenericRepository[Account]):
            pass

        assert await AccountRepo(session).first() is ann


class TestGet:
    async def test_get_returns_the_object_or_none(
        self, accounts: AccountRepository, ann: Account
    ) -> None:
        assert await accounts.get(ann.id) is ann
        assert await accounts.get(10_000) is None

    async def test_get_one_is_typed_as_the_model(
        self, accounts: AccountRepository, ann: Account
    ) -> None:
        found = await accounts.get_one(ann.id)
        assert_type(found, Account)
        assert found.email == "ann@example.com"

    async def test_get_one_raises_not_found_with_model_and_ident(
        self, accounts: AccountRepository, ann: Account
    ) -> None:
        with pytest.raises(NotFoundError) as info:
            await accounts.get_one(10_000)
        assert info.value.model is Account
        assert info.value.ident == 10_000
        assert isinstance(info.value, LookupError)
        assert "Account with primary key 10000 not found" in str(info.value)

    async def test_get_answers_from_the_identity_map_unless_locking(
        self, accounts: AccountRepository, session: AsyncSession, ann: Account
    ) -> None:
        conn = await session.connection()
        await conn.execute(
            update(Account.__table__).where(Account.__table__.c.id == ann.id).values(name="Changed")
        )
        assert (await accounts.get_one(ann.id)).name == "Ann"
        assert (await accounts.get_one(ann.id, for_update=True)).name == "Changed"

    async def test_get_with_options_loads_relationships(
        self, accounts: AccountRepository, session: AsyncSession, ann: Account
    ) -> None:
        session.add(Note(account_id=ann.id, text="hello"))
        await session.commit()
        session.expunge_all()
        found = await accounts.get_one(ann.id, options=[selectinload(Account.notes)])
        assert [note.text for note in found.notes] == ["hello"]

    @pytest.mark.parametrize(
        ("pk", "message"),
        [
            ((1, 2), "has 1 column"),
            (None, "cannot contain None"),
            ({"uid": 1}, "needs the keys id"),
        ],
    )
    async def test_get_rejects_a_key_of_the_wrong_shape(
        self, accounts: AccountRepository, pk: Any, message: str
    ) -> None:
        with pytest.raises(InvalidFieldError, match=message):
            await accounts.get(pk)

    async def test_get_many_returns_input_order_skipping_missing_and_repeats(
        self, accounts: AccountRepository, ann: Account
    ) -> None:
        everyone = await accounts.list(order_by="id")
        a, b, c = (acc.id for acc in everyone)
        found = await accounts.get_many([c, 10_000, a, c, b])
        assert [acc.id for acc in found] == [c, a, b]
        assert await accounts.get_many([]) == []

    async def test_get_many_handles_more_keys_than_one_query_takes(
        self, accounts: AccountRepository, session: AsyncSession
    ) -> None:
        session.add_all([Account(email=f"u{i}@example.com") for i in range(1200)])
        await session.flush()
        ids = [acc.id for acc in await accounts.list(order_by="-id")]
        assert [acc.id for acc in await accounts.get_many(ids)] == ids


class TestQueries:
    async def test_find_one_returns_the_match_or_none(
        self, accounts: AccountRepository, ann: Account
    ) -> None:
        assert await accounts.get_by_email("ann@example.com") is ann
        assert await accounts.find_one(Account.name == "Bob", email__like="%@example.com")
        assert await accounts.find_one(email="nobody@example.com") is None

    async def test_find_one_raises_when_several_match(
        self, accounts: AccountRepository, ann: Account
    ) -> None:
        with pytest.raises(MultipleResultsError) as info:
            await accounts.find_one(email__like="%@example.com")
        assert info.value.model is Account

    async def test_list_filters_orders_and_slices(
        self, accounts: AccountRepository, ann: Account
    ) -> None:
        found = await accounts.list(name__is_null=False, order_by="-email")
        assert [acc.name for acc in found] == ["Bob", "Ann"]
        found = await accounts.list(order_by="email", limit=1, offset=1)
        assert [acc.email for acc in found] == ["bob@example.com"]
        assert len(await accounts.list(offset=2)) == 1
        assert await accounts.list(limit=0) == []

    async def test_list_can_lock_rows_and_load_relationships(
        self, accounts: AccountRepository, ann: Account
    ) -> None:
        found = await accounts.list(
            email=ann.email, for_update=True, options=[selectinload(Account.notes)]
        )
        assert found == [ann]
        assert found[0].notes == []

    async def test_count_and_exists(self, accounts: AccountRepository, ann: Account) -> None:
        assert await accounts.count() == 3
        assert await accounts.count(name=None) == 1
        assert await accounts.count(Account.id == ann.id) == 1
        assert await accounts.exists(name="Ann") is True
        assert await accounts.exists(name="Zed") is False

    async def test_count_is_zero_on_an_empty_table(self, accounts: AccountRepository) -> None:
        assert await accounts.count() == 0
        assert await accounts.exists() is False


class TestStream:
    async def test_stream_yields_every_row_in_order(
        self, accounts: AccountRepository, session: AsyncSession
    ) -> None:
        session.add_all([Account(email=f"s{i:03}@example.com") for i in range(25)])
        await session.flush()
        emails = [acc.email async for acc in accounts.stream(order_by="email", chunk_size=7)]
        assert emails == [f"s{i:03}@example.com" for i in range(25)]

    async def test_stream_chunks_yields_lists_of_chunk_size(
        self, accounts: AccountRepository, session: AsyncSession
    ) -> None:
        session.add_all([Account(email=f"s{i:03}@example.com") for i in range(25)])
        await session.flush()
        sizes = [len(chunk) async for chunk in accounts.stream_chunks(chunk_size=10)]
        assert sizes == [10, 10, 5]

    async def test_stream_applies_filters(self, accounts: AccountRepository, ann: Account) -> None:
        names = [acc.name async for acc in accounts.stream(name__is_null=False, order_by="name")]
        assert names == ["Ann", "Bob"]

    async def test_breaking_out_early_closes_the_result(
        self, accounts: AccountRepository, session: AsyncSession
    ) -> None:
        session.add_all([Account(email=f"s{i:03}@example.com") for i in range(30)])
        await session.flush()
        async with aclosing(accounts.stream(order_by="email", chunk_size=5)) as rows:
            async for account in rows:
                if account.email == "s003@example.com":
                    break
        assert await accounts.count() == 30

    async def test_stream_rejects_a_bad_chunk_size(self, accounts: AccountRepository) -> None:
        with pytest.raises(InvalidFieldError, match="chunk_size"):
            async for _ in accounts.stream(chunk_size=0):
                pass


@dataclasses.dataclass
class AccountData:
    email: str
    name: str | None = None


class AccountIn(BaseModel):
    email: str
    name: str | None = None
    balance: int = 0


class AccountPatch(BaseModel):
    name: str | None = None
    balance: int | None = None


class TestCreate:
    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    async def test_create_from_keywords_flushes_and_loads_server_defaults(
        self, accounts: AccountRepository, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        account = await accounts.create(email="new@example.com", name="New")
        assert isinstance(account.id, int)
        assert isinstance(account.created_at, dt.datetime)
        assert account.balance == 0
        assert await stored(engine) == []  # flushed, not committed
        await session.commit()
        assert await stored(engine) == ["new@example.com"]

    @pytest.mark.parametrize(
        "data",
        [
            {"email": "d@example.com", "name": "D"},
            AccountData(email="d@example.com", name="D"),
            AccountIn(email="d@example.com", name="D"),
            Account(email="d@example.com", name="D"),
        ],
        ids=["mapping", "dataclass", "pydantic", "instance"],
    )
    async def test_create_accepts_every_kind_of_data(
        self, accounts: AccountRepository, data: Any
    ) -> None:
        account = await accounts.create(data)
        assert (account.email, account.name) == ("d@example.com", "D")
        assert await accounts.get(account.id) is account

    async def test_keywords_override_data(self, accounts: AccountRepository) -> None:
        account = await accounts.create({"email": "e@example.com", "name": "E"}, name="F")
        assert account.name == "F"
        instance = await accounts.create(Account(email="g@example.com"), name="G")
        assert instance.name == "G"

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"emial": "x"}, "unknown field 'emial' on Account"),
            ({"notes": []}, "'notes' on Account is a relationship"),
            ({"display": "x"}, "'display' on Account is not a mapped column"),
        ],
    )
    async def test_invalid_fields_raise_before_any_sql(
        self,
        accounts: AccountRepository,
        engine: AsyncEngine,
        values: dict[str, Any],
        message: str,
    ) -> None:
        with pytest.raises(InvalidFieldError, match=message) as info:
            await accounts.create(email="x@example.com", **values)
        assert info.value.model is Account
        assert not accounts.session.new
        assert await accounts.count() == 0

    async def test_instance_of_another_model_is_refused(self, accounts: AccountRepository) -> None:
        with pytest.raises(TypeError, match="got a Note"):
            await accounts.create(Note(text="x"))

    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    async def test_unique_violation_raises_conflict_and_changes_nothing(
        self,
        accounts: AccountRepository,
        session: AsyncSession,
        engine: AsyncEngine,
        ann: Account,
    ) -> None:
        with pytest.raises(ConflictError) as info:
            await accounts.create(email="ann@example.com")
        assert info.value.kind == "unique"
        assert info.value.model is Account
        assert isinstance(info.value.__cause__, IntegrityError)
        await session.rollback()
        assert await stored(engine) == ["ann@example.com", "bob@example.com", "cy@example.com"]

    async def test_primary_key_already_in_the_session_raises_conflict_without_sql(
        self, accounts: AccountRepository, session: AsyncSession, ann: Account
    ) -> None:
        with pytest.raises(ConflictError) as info:
            await accounts.create(id=ann.id, email="other@example.com")
        assert info.value.kind == "unique"
        assert info.value.columns == ("id",)
        assert await accounts.count() == 3  # the session is still usable

    async def test_not_null_violation_raises_conflict(
        self, accounts: AccountRepository, session: AsyncSession
    ) -> None:
        with pytest.raises(ConflictError) as info:
            await accounts.create(email=None)
        assert info.value.kind == "not_null"
        await session.rollback()
        assert await accounts.count() == 0


class TestUpdate:
    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    async def test_update_by_pk_assigns_flushes_and_loads_onupdate_values(
        self, accounts: AccountRepository, session: AsyncSession, engine: AsyncEngine, ann: Account
    ) -> None:
        updated = await accounts.update(ann.id, name="Annie", balance=5)
        assert updated is ann
        assert (ann.name, ann.balance) == ("Annie", 5)
        assert isinstance(ann.edited_at, dt.datetime)
        await session.commit()
        async with engine.connect() as conn:
            row = (await conn.execute(select(Account.name).where(Account.id == ann.id))).one()
        assert row.name == "Annie"

    async def test_update_by_instance_and_with_data(
        self, accounts: AccountRepository, ann: Account
    ) -> None:
        await accounts.update(ann, {"name": "A1"})
        assert ann.name == "A1"
        await accounts.update(ann, AccountData(email="ann2@example.com", name="A2"))
        assert (ann.email, ann.name) == ("ann2@example.com", "A2")

    async def test_pydantic_data_updates_only_the_fields_it_set(
        self, accounts: AccountRepository, ann: Account
    ) -> None:
        await accounts.update(ann.id, balance=7)
        await accounts.update(ann.id, AccountPatch(name="Patched"))
        assert (ann.name, ann.balance) == ("Patched", 7)
        await accounts.update(ann.id, AccountPatch(name=None))
        assert ann.name is None

    async def test_detached_instance_is_merged(
        self, accounts: AccountRepository, session: AsyncSession, ann: Account
    ) -> None:
        session.expunge(ann)
        merged = await accounts.update(ann, name="Merged")
        assert merged is not ann
        assert merged.name == "Merged"
        assert (await accounts.get_one(ann.id)).name == "Merged"

    async def test_missing_pk_raises_not_found(
        self, accounts: AccountRepository, ann: Account
    ) -> None:
        with pytest.raises(NotFoundError) as info:
            await accounts.update(10_000, name="x")
        assert info.value.ident == 10_000

    async def test_never_saved_instance_is_refused(self, accounts: AccountRepository) -> None:
        with pytest.raises(InvalidFieldError, match="never saved"):
            await accounts.update(Account(email="t@example.com"), name="x")

    async def test_changing_the_primary_key_is_refused(
        self, accounts: AccountRepository, session: AsyncSession, engine: AsyncEngine, ann: Account
    ) -> None:
        with pytest.raises(InvalidFieldError, match="primary key 'id' of Account cannot be"):
            await accounts.update(ann.id, id=ann.id + 100, name="Moved")
        assert ann.name == "Ann"
        same = await accounts.update(ann.id, {"id": ann.id, "name": "Same"})
        assert same.name == "Same"

    @pytest.mark.parametrize(
        ("values", "message"),
        [({"emial": "x"}, "unknown field"), ({"notes": []}, "relationship")],
    )
    async def test_invalid_fields_leave_the_object_unchanged(
        self,
        accounts: AccountRepository,
        ann: Account,
        values: dict[str, Any],
        message: str,
    ) -> None:
        with pytest.raises(InvalidFieldError, match=message):
            await accounts.update(ann.id, name="Changed", **values)
        assert ann.name == "Ann"
        assert not accounts.session.dirty

    async def test_unique_violation_raises_conflict(
        self, accounts: AccountRepository, session: AsyncSession, engine: AsyncEngine, ann: Account
    ) -> None:
        with pytest.raises(ConflictError) as info:
            await accounts.update(ann, email="bob@example.com")
        assert info.value.kind == "unique"
        await session.rollback()
        assert await stored(engine) == ["ann@example.com", "bob@example.com", "cy@example.com"]


class TestDelete:
    async def test_delete_by_pk_and_by_instance(
        self, accounts: AccountRepository, session: AsyncSession, engine: AsyncEngine, ann: Account
    ) -> None:
        bob = await accounts.get_by_email("bob@example.com")
        assert await accounts.delete(ann.id) is True
        assert await accounts.delete(bob) is True
        assert await accounts.delete(ann.id) is False
        await session.commit()
        assert await stored(engine) == ["cy@example.com"]

    async def test_delete_of_a_detached_instance_finds_its_row(
        self, accounts: AccountRepository, session: AsyncSession, ann: Account
    ) -> None:
        session.expunge(ann)
        assert await accounts.delete(ann) is True
        assert await accounts.get(ann.id) is None

    async def test_never_stored_instances_delete_nothing(
        self, accounts: AccountRepository, session: AsyncSession, ann: Account
    ) -> None:
        pending = Account(email="p@example.com")
        session.add(pending)
        assert await accounts.delete(pending) is False
        assert pending not in session
        assert await accounts.delete(Account(email="t@example.com")) is False
        assert await accounts.count() == 3

    @pytest.mark.backends("postgresql", "mariadb")
    async def test_foreign_key_violation_raises_conflict(
        self, accounts: AccountRepository, session: AsyncSession, engine: AsyncEngine, ann: Account
    ) -> None:
        await NoteRepository(session).create(account_id=ann.id, text="keep me")
        await session.commit()
        session.expunge_all()
        with pytest.raises(ConflictError) as info:
            await accounts.delete(ann.id)
        assert info.value.kind == "foreign_key"
        await session.rollback()
        assert "ann@example.com" in await stored(engine)


class TestDataclassModels:
    async def test_dataclass_mapped_models_work_end_to_end(self, session: AsyncSession) -> None:
        tags = AsyncRepository(session, model=Tag)
        first = await tags.create(label="a")
        second = await tags.create(Tag(label="b", uses=2))
        assert (first.id, first.uses) == (1, 0)
        assert await tags.list(order_by="-label") == [second, first]
        assert await tags.find_one(label="a") is first
        assert await tags.get_many([second.id, first.id]) == [second, first]
        await tags.update(first, Tag(label="c", uses=5))
        assert (first.label, first.uses) == ("c", 5)
        page = await tags.paginate_cursor(order_by="label", limit=1)
        assert page.items == [second]


class TestCompositeKey:
    async def test_every_method_takes_a_tuple_or_mapping_key(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        members = MembershipRepository(session)
        await members.create(group_id=1, member_id=1, role="owner")
        await members.create(group_id=1, member_id=2, role="guest")
        await members.create(group_id=2, member_id=1, role="guest")
        assert (await members.get_one((1, 2))).role == "guest"
        assert (await members.get_one({"group_id": 2, "member_id": 1})).role == "guest"
        found = await members.get_many([(2, 1), (9, 9), [1, 1]])
        assert [(m.group_id, m.member_id) for m in found] == [(2, 1), (1, 1)]
        await members.update((1, 2), role="admin")
        assert await members.delete((2, 1)) is True
        assert await members.delete((2, 1)) is False
        await session.commit()
        assert await stored(engine, Membership.role) == ["admin", "owner"]

    async def test_a_scalar_key_is_refused(self, session: AsyncSession) -> None:
        members = MembershipRepository(session)
        with pytest.raises(InvalidFieldError, match="composite primary key"):
            await members.get(1)
        with pytest.raises(InvalidFieldError, match="has 2 column"):
            await members.get((1,))

    async def test_duplicate_key_raises_conflict(self, session: AsyncSession) -> None:
        members = MembershipRepository(session)
        await members.create(group_id=1, member_id=1, role="owner")
        with pytest.raises(ConflictError) as info:
            await members.create(group_id=1, member_id=1, role="again")
        assert info.value.kind == "unique"
        await session.rollback()


class Token(Base):
    __tablename__ = "repo_token"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    label: Mapped[str] = mapped_column(String(20))


class AccountOptional(BaseModel):
    email: str
    balance: int | None = None  # left unset: the column default applies


class TestReviewedBehaviour:
    async def test_detached_instance_does_not_write_back_stale_values(
        self, engine: AsyncEngine, accounts: AccountRepository, session: AsyncSession, ann: Account
    ) -> None:
        session.expunge(ann)
        async with AsyncSession(engine) as other:
            await AccountRepository(other).update(ann.id, name="Changed elsewhere")
            await other.commit()
        ann.email = "ann@new.example.com"  # a change made on the detached instance
        updated = await accounts.update(ann, balance=5)
        await session.commit()
        assert (updated.name, updated.email, updated.balance) == (
            "Changed elsewhere",
            "ann@new.example.com",
            5,
        )
        async with AsyncSession(engine) as fresh:
            row = await AccountRepository(fresh).get_one(ann.id)
            assert (row.name, row.email, row.balance) == (
                "Changed elsewhere",
                "ann@new.example.com",
                5,
            )

    async def test_get_many_finds_keys_given_in_another_type(
        self, backend: str, session: AsyncSession, accounts: AccountRepository, ann: Account
    ) -> None:
        from sqla_uow.testing import InMemoryRepository

        repo: Any
        if backend == "postgresql":  # asyncpg takes a UUID as text, not an int as text
            repo = AsyncRepository(session, model=Token)
            fake: InMemoryRepository[Any] = InMemoryRepository(Token)
            key = uuid.uuid4()
            for target in (repo, fake):
                await target.create(id=key, label="t")
        else:
            repo, fake, key = accounts, InMemoryRepository(Account), ann.id
            await fake.create(id=ann.id, email="ann@example.com")
        for target in (repo, fake):
            found = await target.get_many([str(key), key])
            assert [row.id for row in found] == [key]
            assert (await target.get(str(key))) is found[0]

    @pytest.mark.parametrize("window", [{"limit": 2**70}, {"offset": 2**63}])
    async def test_out_of_range_windows_are_rejected_before_sql(
        self, accounts: AccountRepository, ann: Account, window: dict[str, int]
    ) -> None:
        from sqla_uow.testing import InMemoryRepository

        for repo in (accounts, InMemoryRepository(Account)):
            with pytest.raises(InvalidFieldError, match="64-bit") as info:
                await repo.list(**window)  # type: ignore[attr-defined]
            assert info.value.field == next(iter(window))
        assert await accounts.count() == 3  # the transaction is still usable

    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    async def test_find_one_can_lock_the_row(
        self, backend: str, engine: AsyncEngine, accounts: AccountRepository, ann: Account
    ) -> None:
        locked = await accounts.find_one(email="ann@example.com", for_update=True)
        assert locked is ann
        if backend == "sqlite":
            return
        nowait = "SET lock_timeout = '100ms'" if backend == "postgresql" else None
        async with engine.connect() as conn:
            if nowait:
                await conn.execute(text(nowait))
            else:
                await conn.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
            with pytest.raises(DBAPIError):
                await conn.execute(select(Account).where(Account.id == ann.id).with_for_update())
            await conn.rollback()

    async def test_create_with_pydantic_data_leaves_unset_fields_to_column_defaults(
        self, accounts: AccountRepository
    ) -> None:
        created = await accounts.create(AccountOptional(email="dee@example.com"))
        assert created.balance == 0
        explicit = await accounts.create(AccountOptional(email="eve@example.com", balance=7))
        assert explicit.balance == 7

    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    async def test_null_ordering_works_with_joined_eager_loading_and_a_limit(
        self, accounts: AccountRepository, ann: Account
    ) -> None:
        # A limit with a joined collection makes SQLAlchemy order a subquery: the NULL
        # sort key must survive being moved into its columns.
        found = await accounts.list(order_by="-name", limit=2, options=[joinedload(Account.notes)])
        assert [a.email for a in found] == ["cy@example.com", "bob@example.com"]
        found = await accounts.list(order_by="name", limit=3, options=[joinedload(Account.notes)])
        assert [a.email for a in found] == ["ann@example.com", "bob@example.com", "cy@example.com"]
