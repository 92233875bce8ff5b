"""The shop example's settings: read from the environment, refused when unusable."""

from __future__ import annotations

import pytest

import _shop  # noqa: F401  (puts examples/ on sys.path)
from shop.settings import DEFAULT_DATABASE_URL, Settings, SettingsError

SECRET = "s" * 32


class TestFromEnv:
    def test_defaults_to_development_on_sqlite_without_a_secret(self) -> None:
        settings = Settings.from_env({})

        assert settings == Settings(
            database_url=DEFAULT_DATABASE_URL,
            echo_sql=False,
            environment="development",
            cursor_secret=None,
            admin_token=None,
        )

    def test_reads_every_variable(self) -> None:
        settings = Settings.from_env(
            {
                "DATABASE_URL": "postgresql+asyncpg://localhost/shop",
                "SHOP_ECHO_SQL": "1",
                "SHOP_ENV": "production",
                "SHOP_CURSOR_SECRET": SECRET,
                "DATABASE_PGBOUNCER": "1",
                "SHOP_ADMIN_TOKEN": " admin-token ",
            }
        )

        assert settings == Settings(
            database_url="postgresql+asyncpg://localhost/shop",
            echo_sql=True,
            environment="production",
            cursor_secret=SECRET.encode(),
            pgbouncer=True,
            admin_token="admin-token",
        )

    def test_behind_pgbouncer_the_engine_keeps_statements_inside_transactions(self) -> None:
        url = "postgresql+asyncpg://localhost/shop"
        direct = Settings.from_env({"DATABASE_URL": url})
        pooled = Settings.from_env({"DATABASE_URL": url, "DATABASE_PGBOUNCER": "1"})

        assert direct.engine_options(echo=True) == {"echo": True}
        options = pooled.engine_options(echo=True)
        assert options["echo"] is True
        assert options["connect_args"]["statement_cache_size"] == 0

    def test_an_empty_secret_is_no_secret(self) -> None:
        assert Settings.from_env({"SHOP_CURSOR_SECRET": "  "}).cursor_secret is None


class TestProductionMode:
    @pytest.mark.parametrize("environ", [{}, {"SHOP_CURSOR_SECRET": ""}])
    def test_refuses_to_start_without_a_cursor_secret(self, environ: dict[str, str]) -> None:
        with pytest.raises(SettingsError, match="SHOP_CURSOR_SECRET is not set") as caught:
            Settings.from_env({"SHOP_ENV": "production", **environ})

        assert "secrets.token_urlsafe(32)" in str(caught.value)

    def test_refuses_a_short_cursor_secret(self) -> None:
        with pytest.raises(SettingsError, match="is 8 characters long; use 32 or more"):
            Settings.from_env({"SHOP_ENV": "production", "SHOP_CURSOR_SECRET": "password"})

    def test_refuses_an_unknown_environment(self) -> None:
        with pytest.raises(SettingsError, match="SHOP_ENV must be one of development, production"):
            Settings.from_env({"SHOP_ENV": "prod"})

    def test_development_accepts_a_secret_or_none(self) -> None:
        assert Settings(cursor_secret=b"short").cursor_secret == b"short"
        assert Settings().cursor_secret is None
