# One image for every part of Maximum Continual (docker-compose.yml picks the command per service).
# Built with the project's own bootstrap, so the image holds exactly what `make install` installs.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends git make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
RUN scripts/bootstrap.sh
ENV PATH=/app/.venv/bin:$PATH \
    MC_STATE_DIR=/state \
    MC_CACHE_DIR=/cache
VOLUME ["/state", "/cache"]
ENTRYPOINT ["mc"]
