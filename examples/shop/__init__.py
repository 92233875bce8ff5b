"""A user/order shop built on sqla_uow: models, repositories, services and a FastAPI app.

Module by module, from the data up:

- `shop.models`: the SQLAlchemy models (`User`, `Order`).
- `shop.repositories`: `UserRepository` and `OrderRepository` on `sqla_uow.AsyncRepository`.
- `shop.uow`: `ShopUnitOfWork`, one transaction with both repositories.
- `shop.filters`: `UserFilters`, what clients may filter and sort the users list on.
- `shop.services`: the use cases, written with the unit of work and with ``@transactional``.
- `shop.schemas`: the pydantic models the HTTP API reads and writes.
- `shop.app`: the FastAPI application (``uvicorn shop.app:app --app-dir examples``).
- `shop.migrations`: the Alembic migrations that create the schema.
"""
