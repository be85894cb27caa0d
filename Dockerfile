# nurture in a container: `nurture serve` by default; any other command with `docker run IMAGE send` etc.
# The workspace (nurture.toml, campaigns/, templates/) is mounted at /srv/nurture; secrets come from the
# environment (NURTURE_DATABASE_URL, NURTURE_SECRET, NURTURE_SMTP_PASSWORD ...). See deploy/compose.yaml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the package with the PostgreSQL driver; the source tree is not kept in the image.
COPY pyproject.toml README.md LICENSE /tmp/nurture/
COPY nurture /tmp/nurture/nurture
COPY campaigns /tmp/nurture/campaigns
COPY templates /tmp/nurture/templates
RUN pip install "/tmp/nurture[postgres]" && rm -rf /tmp/nurture

# A user without a login shell or a home worth anything: the server needs to write nothing but its logs (stderr).
RUN useradd --system --uid 10001 --home-dir /srv/nurture --shell /usr/sbin/nologin nurture \
    && mkdir -p /srv/nurture && chown nurture:nurture /srv/nurture
WORKDIR /srv/nurture
USER nurture

# JSON lines on stderr for the log collector; override with -e NURTURE_LOG_FORMAT=text.
ENV NURTURE_LOG_FORMAT=json
EXPOSE 8080

# /healthz answers 503 when the database does not: the container turns unhealthy, not just the process.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]

ENTRYPOINT ["nurture"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
