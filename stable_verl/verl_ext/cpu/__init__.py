"""CPU shims for verl and vLLM: the verl CPU platform and vLLM-CPU's weight reloads and returned routes.

None of this is the method; it lets the real verl + vLLM stack run on a machine without a GPU. Each module
registers itself only on CPU, through the entry points in ``stable_verl.verl_ext.verl_plugin`` and
``stable_verl.verl_ext.vllm_cpu_plugin``.
"""
