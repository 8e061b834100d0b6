"""WSGI entry point: ``gunicorn wsgi:app``.

A refusal to start is printed as its one line and exits with gunicorn's "app failed to load"
status (4), so gunicorn stops instead of booting failing workers again and again.
"""

import sys

from crm import create_app
from crm.settings import ConfigError

try:
    app = create_app()
except ConfigError as refusal:
    print(refusal.code, file=sys.stderr, flush=True)
    sys.exit(4)
