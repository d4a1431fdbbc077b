from bytespike_common.db import run_migrations_online
from bytespike_metering.schema import metadata

run_migrations_online(metadata)
