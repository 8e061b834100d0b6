"""Flask-WTF forms, one module per blueprint: field shape and messages only.

Every POST is CSRF-protected by :data:`csrf`, including those made without a form class.
"""

from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
