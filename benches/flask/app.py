"""Seed 000's Flask app: a view microcached for 5 seconds between gunicorn workers.

"Add some microcaching (cache with fast timeout Eg: 5 seconds) between your gunicorn
workers" -- the view below is the seed's code, unchanged. The cache is Flask-Caching's
MemcachedCache on the memcached servers named by MEMCACHIER_SERVERS (Heroku/MemCachier
style, "host:port,host:port") or CACHE_MEMCACHED_SERVERS; without either it falls back to
the in-memory SimpleCache (one per worker).

    MEMCACHIER_SERVERS=127.0.0.1:11211 gunicorn -w 2 -b 127.0.0.1:8000 app:app

scripts/bench-web measures it with wrk against the Rust `microcache` example.
"""

import os

from flask import Flask
from flask_caching import Cache

MICROCACHE_TIMEOUT = 5

servers = os.environ.get("MEMCACHIER_SERVERS") or os.environ.get("CACHE_MEMCACHED_SERVERS")
if servers:
    # Plain memcached through python-memcached (pure Python; Flask-Caching tries pylibmc,
    # then google.appengine, then python-memcached, then libmc).
    config = {
        "CACHE_TYPE": "MemcachedCache",
        "CACHE_MEMCACHED_SERVERS": [s.strip() for s in servers.replace(";", ",").split(",") if s.strip()],
    }
else:
    config = {"CACHE_TYPE": "SimpleCache"}

app = Flask(__name__)
cache = Cache(app, config=config)


@app.route('/')
@cache.cached(timeout=MICROCACHE_TIMEOUT)
def index():
    from datetime import datetime
    return datetime.now().isoformat()
