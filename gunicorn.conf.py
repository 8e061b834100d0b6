"""gunicorn settings for Intake CRM: ``gunicorn -c gunicorn.conf.py`` (see docs/deployment.md).

Threaded workers (``gthread``): a slow client holds one thread, not a whole worker, so a few
slow request bodies cannot stall the health check. The buffering proxy in front (nginx,
Caddy) should still read whole requests before passing them on. Override with ``CRM_BIND``,
``CRM_WORKERS``, ``CRM_THREADS`` and ``CRM_TRUSTED_PROXIES`` (the proxy addresses whose
``X-Forwarded-*`` headers count, also read by the application).
"""

import os

wsgi_app = "wsgi:app"
# Load the app once in the master: a refusal to start is one line and exit status 4, not failing workers.
preload_app = True
bind = os.environ.get("CRM_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("CRM_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("CRM_THREADS", "4"))
timeout = 30  # a worker whose main loop is silent this long is restarted
graceful_timeout = 30
keepalive = 5  # behind a proxy on loopback; the proxy holds the clients' keep-alive
forwarded_allow_ips = os.environ.get("CRM_TRUSTED_PROXIES", "127.0.0.1,::1")
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
# No access log: a patient's IP address is PHI and the proxy's log is the place for addresses.
accesslog = None
errorlog = "-"

# The application refuses per-process rate limits (memory://) when several workers run in
# production, so it must know how many there are.
os.environ["CRM_WORKERS"] = str(workers)
