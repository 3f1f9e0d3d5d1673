# catga-bench: the harness, the reference core and the scenarios, for docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY catga_bench ./catga_bench
RUN pip install --no-cache-dir '.[nats,redis]'
COPY scenarios ./scenarios
EXPOSE 8089 9464 9465
ENTRYPOINT ["locust"]
