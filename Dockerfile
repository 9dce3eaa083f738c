# ketamine-cds: the CDS Hooks service and the SMART app, from the locked dependencies, as a non-root user.
#   docker build -t ketamine-cds .
#   docker run -p 8000:8000 -v /etc/ketamine-cds:/config:ro ketamine-cds serve --config /config/ketamine-cds.toml
# docs/deployment.md explains the configuration, the database and the proxy in front.
FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.5 /uv /usr/local/bin/uv
WORKDIR /src
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/ketamine-cds
# Dependencies first (a layer that changes only with uv.lock), then the project itself; no dev group, no demo extra.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY fhir_mapping fhir_mapping
COPY eligibility eligibility
COPY storage storage
COPY cds_hooks cds_hooks
COPY smart_app smart_app
COPY ketamine_cds ketamine_cds
COPY ehr_sandbox ehr_sandbox
# ketamine_cds/demo_patients links to fixtures/patients; the wheel build follows the link.
COPY fixtures/patients fixtures/patients
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 ketamine && useradd --system --uid 10001 --gid ketamine --home /var/lib/ketamine-cds ketamine \
    && mkdir -p /var/lib/ketamine-cds /var/log/ketamine-cds && chown ketamine:ketamine /var/lib/ketamine-cds /var/log/ketamine-cds
COPY --from=build /opt/ketamine-cds /opt/ketamine-cds
ENV PATH=/opt/ketamine-cds/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER ketamine
WORKDIR /var/lib/ketamine-cds
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
ENTRYPOINT ["ketamine-cds"]
CMD ["serve", "--config", "/config/ketamine-cds.toml"]
