"""Integrations with other frameworks, each an optional extra (``sqla-uow[fastapi]``)."""
