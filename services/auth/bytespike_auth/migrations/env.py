from bytespike_auth.schema import metadata
from bytespike_common.db import run_migrations_online

run_migrations_online(metadata)
