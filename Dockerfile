FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY campaigns campaigns
COPY worker worker
COPY config config
COPY templates templates
RUN pip install --no-cache-dir -e .
USER nobody
ENV CAMPAIGNS_DATA_DIR=/tmp/campaigns
