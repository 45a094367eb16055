# The hub's image for docker-compose users (the embedded local stack needs no Docker at all).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY topics ./topics
COPY schemas ./schemas
COPY processors ./processors
COPY connectors ./connectors
COPY sinks ./sinks
COPY monitoring ./monitoring
RUN pip install --no-cache-dir .
USER 65534:65534
ENTRYPOINT ["kenshin-hub"]
CMD ["--help"]
