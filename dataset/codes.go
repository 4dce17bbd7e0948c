package dataset

// Error codes. They are stable: scripts match on them in the --json output.
const (
	CodeInvalidJSON             = "invalid_json"
	CodeInvalidUTF8             = "invalid_utf8"
	CodeNotAnObject             = "not_an_object"
	CodeMissingMessages         = "missing_messages"
	CodeEmptyMessages           = "empty_messages"
	CodeMessageNotObject        = "message_not_object"
	CodeMessageMissingKey       = "message_missing_key"
	CodeMessageUnrecognizedKey  = "message_unrecognized_key"
	CodeUnrecognizedRole        = "unrecognized_role"
	CodeContentNotString        = "content_not_string"
	CodeMissingAssistantMessage = "missing_assistant_message"
	CodeEmptyAssistantContent   = "empty_assistant_content"
	CodeInvalidWeight           = "invalid_weight"
	CodeLineTooLong             = "line_too_long"
	// CodeTooFewExamples is an error under MinExamples and a warning under FewExamples.
	CodeTooFewExamples = "too_few_examples"
	// CodeInvalidTools: a row's "tools" is not a list of objects (function schemas).
	CodeInvalidTools = "invalid_tools"
	// CodeNoEvalExamples: an eval file was given but holds no valid example.
	CodeNoEvalExamples = "no_eval_examples"
	// CodeDuplicateKey: a key appears twice in one object; JSON loaders keep the last
	// one, so the checker and the trainer would see different data.
	CodeDuplicateKey = "duplicate_key"
	// CodeChatTemplateError: the tokenizer's chat template raised on this example, so the
	// trainer would fail on it too (only with a tokenizer).
	CodeChatTemplateError = "chat_template_error"
)

// Warning codes, also stable.
const (
	CodeSmallDataset             = "small_dataset"
	CodeDuplicateExample         = "duplicate_example"
	CodeTrainEvalOverlap         = "train_eval_overlap"
	CodeInconsistentSystemPrompt = "inconsistent_system_prompt"
	CodeSystemPromptMismatch     = "system_prompt_mismatch"
	CodeExceedsMaxLength         = "exceeds_max_length"
	// CodeLabelsTruncatedAway is an error when it hits every example the tokenizer
	// counted in a file.
	CodeLabelsTruncatedAway     = "labels_truncated_away"
	CodeMissingEOSInTemplate    = "missing_eos_in_template"
	CodeLastMessageNotAssistant = "last_message_not_assistant"
	CodeConsecutiveSameRole     = "consecutive_same_role"
	CodeSystemNotFirst          = "system_not_first"
	CodeEmptyUserContent        = "empty_user_content"
	CodeNoEvalSet               = "no_eval_set"
	CodeBlankLines              = "blank_lines"
	// CodeSmallEvalSet: the adopt verdict rests on fewer than FewEvalExamples examples.
	CodeSmallEvalSet = "small_eval_set"
	// CodeEvalMultiTurn: the eval set has multi-turn conversations the train set never shows.
	CodeEvalMultiTurn = "eval_multi_turn"
)

// warningOrder is the order warnings are listed in: dataset-wide problems first, then the
// ones that decide whether training learns anything, then per-example style issues.
var warningOrder = []string{
	CodeTooFewExamples,
	CodeSmallDataset,
	CodeNoEvalSet,
	CodeSmallEvalSet,
	CodeTrainEvalOverlap,
	CodeEvalMultiTurn,
	CodeDuplicateExample,
	CodeMissingEOSInTemplate,
	CodeLabelsTruncatedAway,
	CodeExceedsMaxLength,
	CodeSystemPromptMismatch,
	CodeInconsistentSystemPrompt,
	CodeLastMessageNotAssistant,
	CodeConsecutiveSameRole,
	CodeSystemNotFirst,
	CodeEmptyUserContent,
	CodeBlankLines,
}

// Thresholds from the fine-tuning guidance loractl follows.
const (
	// MinExamples: below it fine-tuning is refused (an error).
	MinExamples = 10
	// FewExamples: below it few-shot prompting is the better tool (a warning).
	FewExamples = 50
	// FewEvalExamples: below it a before/after difference is mostly noise (a warning):
	// with 20 examples a paired comparison can resolve only large effects.
	FewEvalExamples = 20
	// SmallDataset: below it expect modest gains (a warning).
	SmallDataset = 500
)
