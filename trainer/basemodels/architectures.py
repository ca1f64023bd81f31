"""The base-model architectures Hearth imports: those whose conversion by the pinned GGUF converter
never trusts code from the model folder.

How this list was made (llama.cpp as vendored in llama-cpp-python 0.3.36, the converter that
`python -m appliance.converter install` puts under `<venv>/share/hearth/converter/llama.cpp-0.3.36/`):

* `grep -rn trust_remote_code convert_hf_to_gguf.py conversion/` finds 14 calls
  `AutoTokenizer.from_pretrained(<model folder>, trust_remote_code=True)`: in conversion/base.py
  (`_set_vocab_qwen`, `_set_vocab_hybriddna`, `_set_vocab_interns1`) and in chatglm.py, deepseek.py,
  dream.py, glm.py, hunyuan.py (2), kimi_linear.py, llada.py, minimax.py, nemotron.py. With an
  `auto_map` in the folder's tokenizer_config.json each of them imports and runs a .py file from it.
* `python -m trainer.basemodels.converter_audit` follows, for each text architecture the converter
  registers, every call its conversion can make (from `__init__`, `write`, `write_vocab`; every branch
  counted as taken) and lists those from which none of those 14 calls is reachable. That list is
  SAFE_ARCHITECTURES below, verbatim.
* Three call sites are behind a condition on the folder that the importer refuses itself, so the
  audit does not follow them (GATED_CALLS). Without them Llama, Mistral, Granite, SmolLM3 and Qwen3
  would be refused although their ordinary conversion never trusts remote code.

Refused by this list (their conversion can reach trust_remote_code=True with an ordinary folder):
QWenLMHeadModel (Qwen 1: `_set_vocab_qwen` always), StableLM (falls back to Qwen's vocab when there
is no tokenizer.json), ChatGLM / GLM / GLM-4, DeepSeek-V2/V3 and the models built on them (Kimi-VL,
Youtu, HunYuan-V4, OCR variants: when the GPT-2 vocab path fails), HunYuan, Kimi-Linear/K3, MiniMax
M1/Text-01, Nemotron-H, Dream, LLaDA.

tests/trainer/test_basemodels.py re-runs the audit on the installed converter: a new pin under which a
listed architecture reaches trust_remote_code fails that test; then re-run the audit and copy its list.
"""

from __future__ import annotations

CONVERTER = "llama.cpp vendored in llama-cpp-python 0.3.36"

# (caller, callee) call sites the audit does not follow, each with the condition that guards it in
# the converter and how the importer makes sure the condition never holds.
GATED_CALLS: dict[tuple[str, str], str] = {
    ("LlamaModel.set_vocab", "_set_vocab_hybriddna"):
        'only when tokenizer_config.json says "tokenizer_class": "HybridDNATokenizer": '
        "the importer refuses that tokenizer class (REFUSED_TOKENIZER_CLASSES)",
    ("Qwen3Model.set_vocab", "_set_vocab_interns1"):
        "only when config.json's top-level architecture is InternS1ForConditionalGeneration: "
        "the importer requires every architecture named in config.json to be in SAFE_ARCHITECTURES",
    ("Qwen3MoeModel.set_vocab", "_set_vocab_interns1"):
        "as above (InternS1ForConditionalGeneration)",
}

REFUSED_TOKENIZER_CLASSES = frozenset({"HybridDNATokenizer"})

SAFE_ARCHITECTURES = frozenset({
    'AfmoeForCausalLM', 'ApertusForCausalLM', 'ArceeForCausalLM', 'ArcticForCausalLM',
    'AudioFlamingo3ForConditionalGeneration', 'BaiChuanForCausalLM', 'BaichuanForCausalLM',
    'BailingMoeForCausalLM', 'BailingMoeV2ForCausalLM', 'BailingMoeV3ForCausalLM',
    'BailingMoeV3VLForConditionalGeneration', 'BambaForCausalLM', 'BertForMaskedLM',
    'BertForSequenceClassification', 'BertModel', 'BitNetForCausalLM', 'BitnetForCausalLM',
    'BloomForCausalLM', 'BloomModel', 'CamembertModel', 'ChameleonForCausalLM',
    'ChameleonForConditionalGeneration', 'CodeShellForCausalLM', 'CogVLMForCausalLM', 'Cohere2ForCausalLM',
    'Cohere2MoeForCausalLM', 'CohereForCausalLM', 'DFlash2DraftModel', 'DFlashDraftModel',
    'DSparkDraftModel', 'DSparkSpeculator', 'DbrxForCausalLM', 'DeciLMForCausalLM', 'DeepseekForCausalLM',
    'DeepseekV32ForCausalLM', 'DeepseekV4DSparkModel', 'DeepseekV4ForCausalLM', 'DistilBertForMaskedLM',
    'DistilBertForSequenceClassification', 'DistilBertModel', 'Dots1ForCausalLM', 'Dots3NoteForCausalLM',
    'Dots3NoteForConditionalGeneration', 'Dots3NoteTextForCausalLM', 'DotsOCRForCausalLM',
    'Eagle3DraftModel', 'Eagle3LlamaForCausalLM', 'Eagle3Speculator', 'Ernie4_5ForCausalLM',
    'Ernie4_5_ForCausalLM', 'Ernie4_5_MoeForCausalLM', 'EuroBertModel', 'Exaone4ForCausalLM',
    'Exaone4_5_ForConditionalGeneration', 'ExaoneForCausalLM', 'ExaoneMoEForCausalLM',
    'ExaoneMoeForCausalLM', 'FalconForCausalLM', 'FalconH1ForCausalLM', 'FalconMambaForCausalLM',
    'GPT2LMHeadModel', 'GPTBigCodeForCausalLM', 'GPTNeoXForCausalLM', 'GPTRefactForCausalLM',
    'Gemma2ForCausalLM', 'Gemma3ForCausalLM', 'Gemma3ForConditionalGeneration', 'Gemma3TextModel',
    'Gemma3nForCausalLM', 'Gemma3nForConditionalGeneration', 'Gemma4AssistantForCausalLM',
    'Gemma4DSparkModel', 'Gemma4ForCausalLM', 'Gemma4ForConditionalGeneration',
    'Gemma4UnifiedAssistantForCausalLM', 'Gemma4UnifiedForConditionalGeneration', 'GemmaForCausalLM',
    'Glm4MoeForCausalLM', 'Glm4MoeLiteForCausalLM', 'Glm4vMoeForConditionalGeneration',
    'Glm5NextForConditionalGeneration', 'GlmMoeDsaForCausalLM', 'GptOssForCausalLM', 'GraniteForCausalLM',
    'GraniteMoeForCausalLM', 'GraniteMoeHybridForCausalLM', 'GraniteMoeSWAForCausalLM',
    'GraniteMoeSharedForCausalLM', 'GraniteSWAForCausalLM', 'GraniteSwitchForCausalLM', 'Grok1ForCausalLM',
    'GrokForCausalLM', 'GroveMoeForCausalLM', 'HYV3ForCausalLM', 'HrmTextForCausalLM',
    'IQuestCoderForCausalLM', 'InternLM2ForCausalLM', 'InternLM3ForCausalLM', 'JAISLMHeadModel',
    'Jais2ForCausalLM', 'JambaForCausalLM', 'JanusForConditionalGeneration', 'JinaBertForMaskedLM',
    'JinaBertModel', 'JinaEmbeddingsV5Model', 'KORMoForCausalLM', 'LFM2ForCausalLM', 'LLaDAMoEModel',
    'LLaDAMoEModelLM', 'LLaMAForCausalLM', 'LagunaForCausalLM', 'Lfm25AudioTokenizer',
    'Lfm2BidirectionalModel', 'Lfm2DSparkDraftModel', 'Lfm2ForCausalLM', 'Lfm2Model', 'Lfm2MoeForCausalLM',
    'LingDSparkModel', 'Llama4ForCausalLM', 'Llama4ForConditionalGeneration', 'LlamaBidirectionalModel',
    'LlamaForCausalLM', 'LlamaForCausalLMEagle3', 'LlamaModel', 'LlavaForConditionalGeneration',
    'MPTForCausalLM', 'MT5ForConditionalGeneration', 'MaincoderForCausalLM', 'Mamba2ForCausalLM',
    'MambaForCausalLM', 'MambaLMHeadModel', 'MapleForCausalLM', 'MellumForCausalLM',
    'MiMoV2FlashForCausalLM', 'MiMoV2ForCausalLM', 'MiniCPM3ForCausalLM', 'MiniCPMForCausalLM',
    'MiniCPMV4_6ForConditionalGeneration', 'MiniMaxM2ForCausalLM', 'MiniMaxM3SparseForCausalLM',
    'MiniMaxM3SparseForConditionalGeneration', 'Ministral3ForCausalLM', 'Mistral3ForConditionalGeneration',
    'MistralForCausalLM', 'MixtralForCausalLM', 'ModernBertForMaskedLM',
    'ModernBertForSequenceClassification', 'ModernBertModel', 'MuseGlimmerAssistantModel',
    'MuseGlimmerForConditionalGeneration', 'NanbeigeForCausalLM', 'NemotronForCausalLM', 'NeoBERT',
    'NeoBERTForSequenceClassification', 'NeoBERTLMHead', 'NomicBertModel', 'OLMoForCausalLM',
    'Olmo2ForCausalLM', 'Olmo3ForCausalLM', 'OlmoForCausalLM', 'OlmoeForCausalLM', 'OpenELMForCausalLM',
    'OrionForCausalLM', 'PLMForCausalLM', 'PLaMo2ForCausalLM', 'PLaMo3ForCausalLM',
    'PaddleOCRVLForConditionalGeneration', 'PanguEmbeddedForCausalLM', 'Phi3ForCausalLM', 'Phi4ForCausalLMV',
    'PhiForCausalLM', 'PhiMoEForCausalLM', 'Plamo2ForCausalLM', 'Plamo3ForCausalLM', 'PlamoForCausalLM',
    'PocketTTSModel', 'Qwen2AudioForConditionalGeneration', 'Qwen2ForCausalLM', 'Qwen2Model',
    'Qwen2MoeForCausalLM', 'Qwen2VLForConditionalGeneration', 'Qwen2VLModel', 'Qwen2_5OmniModel',
    'Qwen2_5_VLForConditionalGeneration', 'Qwen3ASRForConditionalGeneration', 'Qwen3DSparkModel',
    'Qwen3ForCausalLM', 'Qwen3Model', 'Qwen3MoeForCausalLM', 'Qwen3NextForCausalLM',
    'Qwen3OmniMoeForConditionalGeneration', 'Qwen3TTSForConditionalGeneration',
    'Qwen3VLForConditionalGeneration', 'Qwen3VLMoeForConditionalGeneration', 'Qwen3_5ForCausalLM',
    'Qwen3_5ForConditionalGeneration', 'Qwen3_5MoeForCausalLM', 'Qwen3_5MoeForConditionalGeneration',
    'Qwen4ExpForCausalLM', 'Qwen4ExpForConditionalGeneration', 'RND1', 'RWForCausalLM',
    'RWKV6Qwen2ForCausalLM', 'RWKV7ForCausalLM', 'RobertaForSequenceClassification', 'RobertaModel',
    'RuGPT3XLForCausalLM', 'Rwkv6ForCausalLM', 'Rwkv7ForCausalLM', 'RwkvHybridForCausalLM',
    'Sarashina2VisionForCausalLM', 'SarvamMoEForCausalLM', 'SeedOssForCausalLM', 'SmallThinkerForCausalLM',
    'SmolLM3ForCausalLM', 'SolarOpenForCausalLM', 'Spark2_5ForCausalLM', 'Starcoder2ForCausalLM',
    'Step3p5ForCausalLM', 'Step3p7ForConditionalGeneration', 'StepVLForConditionalGeneration',
    'T5EncoderModel', 'T5ForConditionalGeneration', 'T5WithLMHeadModel', 'TalkieForCausalLM',
    'UMT5ForConditionalGeneration', 'UMT5Model', 'UltravoxModel', 'VLlama3ForCausalLM',
    'VoxtralForConditionalGeneration', 'WavTokenizerDec', 'XLMRobertaForSequenceClassification',
    'XLMRobertaModel', 'XverseForCausalLM', 'modeling_grove_moe.GroveMoeForCausalLM',
    'modeling_sarvam_moe.SarvamMoEForCausalLM',
})
