"""Test doubles for your service tests: repositories and a unit of work in memory.

Services written against `AsyncRepository` and `SQLAlchemyUnitOfWork` can be tested
without a database by handing them these fakes. They validate like the real classes
(unknown fields raise `InvalidFieldError`, duplicate keys raise `ConflictError`) and
`FakeUnitOfWork` really rolls back, so a test asserts on the data the service left
behind instead of on the calls it made.

Example:
    ```python
    from sqla_uow.testing import FakeUnitOfWork, InMemoryRepository

    async def test_register_rejects_a_taken_email() -> None:
        users = InMemoryRepository(User)
        uow = FakeUnitOfWork(users=users)
        await register(uow, email="ann@example.com", name="Ann")
        with pytest.raises(EmailTakenError):
            await register(uow, email="ann@example.com", name="Other Ann")
        assert uow.rolled_back
        assert [user.name for user in users.rows] == ["Ann"]
    ```
"""

from __future__ import annotations

from ._capture import capture_on_commit
from ._expressions import UnsupportedExpressionError
from ._memory import InMemoryRepository
from ._uow import FakeUnitOfWork

__all__ = [
    "FakeUnitOfWork",
    "InMemoryRepository",
    "UnsupportedExpressionError",
    "capture_on_commit",
]
