# The playground's own services (REST, sink, ...) as one image; Kafka comes from apache/kafka.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY playground ./playground
COPY producers ./producers
COPY consumers ./consumers
COPY storage ./storage
COPY features ./features
COPY services ./services

# Editable install keeps the generated gRPC modules next to their .proto.
RUN pip install -e . && python -m playground.codegen

RUN useradd --create-home playground && mkdir -p /data && chown playground /data
USER playground
ENV PLAYGROUND_DATA_DIR=/data

EXPOSE 8000 50051
CMD ["playground", "status"]
