"""Chat models: resolving ``model=`` and the local llama.cpp model.

* :mod:`~spri_graph.models.resolve` - :func:`resolve_model`: model strings, chat model
  objects, OpenAI-compatible servers, ``init_chat_model`` providers, local GGUF files;
* :mod:`~spri_graph.models.llama` - the llama.cpp side: finding GGUF files, loading them
  once per process, chat formats, the cache of earlier prompts;
* :mod:`~spri_graph.models.threads` - how many threads llama.cpp runs on;
* :mod:`~spri_graph.models.grammar` - structured output: forced tools and their grammars;
* :mod:`~spri_graph.models.chat` - :class:`LocalChatModel`, the LangChain chat model.

Nothing here imports llama.cpp until a local model is first called.
"""

from spri_graph.models.chat import LocalChatModel, is_local_model, load_local_model
from spri_graph.models.llama import default_gguf_path, loaded_llama_count, local_model_available
from spri_graph.models.resolve import ModelSpec, resolve_model, resolve_model_cached
from spri_graph.models.threads import default_threads, set_default_threads

__all__ = [
    "LocalChatModel",
    "ModelSpec",
    "default_gguf_path",
    "default_threads",
    "is_local_model",
    "load_local_model",
    "loaded_llama_count",
    "local_model_available",
    "resolve_model",
    "resolve_model_cached",
    "set_default_threads",
]
