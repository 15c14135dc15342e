# The one image behind web, worker and beat in docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# Static files (admin, Swagger UI) are collected into the image and served by WhiteNoise.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input --verbosity 0

RUN useradd --system --no-create-home lottery
USER lottery

EXPOSE 8000
# Address, workers, threads (GUNICORN_BIND, GUNICORN_WORKERS, GUNICORN_THREADS), access log and request limits.
CMD ["gunicorn", "--config", "gunicorn.conf.py"]
