# catga-bench: the harness, the reference core and the scenarios, for docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY core ./core
COPY catga_bench ./catga_bench
# setup.py ships these folders inside the package (catga_bench/_bundled/); /app/scenarios is
# also what the compose file's commands name
COPY scenarios ./scenarios
COPY experiments ./experiments
COPY dashboards ./dashboards
COPY alerts ./alerts
COPY examples ./examples
RUN pip install --no-cache-dir '.[nats,redis]'
EXPOSE 8089 9464 9465
ENTRYPOINT ["locust"]
