# The SoM toolbox in a container, listening on 0.0.0.0:7860 (also a Hugging Face Space of sdk docker).
# The install step is README's set-up command, word for word (tests/app/test_deploy.py checks it).
#   docker build -t som . && docker run --rm -p 7860:7860 som
#   limits and sessions: docker run -e SOM_MAX_PIXELS=50mp -e SOM_MAX_JOBS=2 -e SOM_SESSION_TTL=1800 ...
FROM python:3.12-slim
WORKDIR /som
COPY pyproject.toml README.md requirements.txt demo_som.py demo_gpt4v_som.py ./
COPY som ./som
COPY assets ./assets
RUN python3 -m venv .venv && .venv/bin/pip install -e ".[app,llm]"
ENV GRADIO_ANALYTICS_ENABLED=False PYTHONUNBUFFERED=1
EXPOSE 7860
CMD [".venv/bin/python", "demo_som.py", "--host", "0.0.0.0", "--port", "7860"]
