"""The LLM leaf shared by evaluation and serving: FIM formats, the prompt builder, the sampler and
`llama_open`. Evaluation imports exactly what serving decodes with, so it scores what users get;
neither the trainer nor the engine imports the other for it."""
