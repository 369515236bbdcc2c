"""The services' database roles on a database the local stack does not run (docker-compose,
a managed server): `gridshare migrate --create-roles` creates each from its service's URL."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

from gridshare.core import db
from gridshare.core.errors import ConfigError, MigrationError
from gridshare.core.settings import SERVICE_ROLES, Settings

GRANTS_VERSIONS = (47, 50)  # the migrations that grant the services' roles their rights


def wanted_roles(settings: Settings) -> dict[str, str | None]:
    """{role: password} for each service whose own URL is set. The URL must name the role
    the migrations grant to; services sharing a role must give it one password."""
    wanted: dict[str, str | None] = {}
    for service, role in SERVICE_ROLES.items():
        url = urlsplit(getattr(settings, f"{service}_db_url"))
        if not url.scheme:
            continue
        setting = f"GRIDSHARE_{service.upper()}_DB_URL"
        if url.username != role:
            raise ConfigError(setting, f"names role {url.username!r}; the grants are for {role}")
        password = unquote(url.password) if url.password is not None else None
        if role in wanted and wanted[role] != password:
            raise ConfigError(setting, f"gives {role} another password than a previous URL")
        wanted[role] = password
    return wanted


def create_service_roles(settings: Settings) -> list[str]:
    """Create (or give its password to) every role `wanted_roles` names, as the migrating
    role, which needs CREATEROLE; the roles created. When the grants' migrations ran before a
    role existed, they are run again (it is idempotent) so the new role gets its rights."""
    created: list[str] = []
    with db.connect(settings, autocommit=True) as conn:
        try:
            for role, password in wanted_roles(settings).items():
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if exists.fetchone() else "CREATE"
                conn.execute(
                    sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                        sql.SQL(verb), sql.Identifier(role), sql.Literal(password)
                    )
                )
                if verb == "CREATE":
                    created.append(role)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise MigrationError(
                f"role {conn.info.user} may not create roles (needs CREATEROLE); create"
                " them as an administrator (docs/database.md, Roles)"
            ) from exc
        if created:
            _grant_again(conn)
    return created


def _grant_again(conn: psycopg.Connection) -> None:
    """Run the grants' migrations again when they ran before the roles just created existed."""
    flavor = db.schema_flavor(conn)
    if flavor is None:
        return
    applied = {
        version
        for (version,) in conn.execute(
            "SELECT version FROM schema_migrations WHERE version = ANY(%s)",
            (list(GRANTS_VERSIONS),),
        )
    }
    for grants in db.migrations(flavor):
        if grants.version in applied:
            conn.execute(grants.path.read_bytes(), prepare=False)
