# The playground's own services (REST, sink, ...) as one image; Kafka comes from apache/kafka.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
# src/dataflow_playground links the layer folders into one import root.
COPY src ./src
COPY core ./core
COPY producers ./producers
COPY storage ./storage
COPY consumers ./consumers
COPY features ./features
COPY services ./services
COPY app ./app

# The generated gRPC modules are committed beside events.proto: a plain install is enough.
RUN pip install .

RUN useradd --create-home playground && mkdir -p /data && chown playground /data
USER playground
ENV PLAYGROUND_DATA_DIR=/data

EXPOSE 8000 50051
CMD ["playground", "status"]
