# Generated from config.Resolved by `go test ./config -run TestResolvedSchema -update`; do not edit.
# The JSON Schema of resolved.json, the trainer's input (`loractl schema --resolved` prints it).
import json

SCHEMA = json.loads(r"""
{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "additionalProperties": false,
  "description": "The validated, defaulted config the trainer reads (docs/trainer-contract.md).",
  "properties": {
    "data": {
      "additionalProperties": false,
      "properties": {
        "eval": {
          "type": "string"
        },
        "eval_split": {
          "exclusiveMaximum": 1,
          "minimum": 0,
          "type": "number"
        },
        "train": {
          "description": "a file path",
          "minLength": 1,
          "type": "string"
        }
      },
      "required": [
        "train",
        "eval",
        "eval_split"
      ],
      "type": "object"
    },
    "distributed": {
      "additionalProperties": false,
      "properties": {
        "nodes": {
          "maximum": 4096,
          "minimum": 1,
          "type": "integer"
        },
        "nproc_per_node": {
          "maximum": 4096,
          "minimum": 0,
          "type": "integer"
        },
        "port": {
          "maximum": 65535,
          "minimum": 1024,
          "type": "integer"
        },
        "strategy": {
          "enum": [
            "ddp",
            "fsdp"
          ],
          "type": "string"
        }
      },
      "required": [
        "nproc_per_node",
        "nodes",
        "strategy",
        "port"
      ],
      "type": "object"
    },
    "eval": {
      "additionalProperties": false,
      "properties": {
        "at_checkpoints": {
          "type": "boolean"
        },
        "generate": {
          "type": "boolean"
        },
        "max_examples": {
          "maximum": 1048576,
          "minimum": 1,
          "type": "integer"
        },
        "max_new_tokens": {
          "maximum": 32768,
          "minimum": 1,
          "type": "integer"
        },
        "metrics": {
          "items": {
            "additionalProperties": false,
            "properties": {
              "api_key_env": {
                "type": "string"
              },
              "endpoint": {
                "type": "string"
              },
              "function": {
                "type": "string"
              },
              "kind": {
                "type": "string"
              },
              "model": {
                "type": "string"
              },
              "name": {
                "type": "string"
              },
              "path": {
                "type": "string"
              },
              "pattern": {
                "type": "string"
              },
              "rubric": {
                "type": "string"
              }
            },
            "required": [
              "name",
              "kind"
            ],
            "type": "object"
          },
          "type": "array"
        },
        "min_improvement": {
          "type": "number"
        },
        "primary": {
          "type": "string"
        }
      },
      "required": [
        "generate",
        "max_examples",
        "max_new_tokens",
        "metrics",
        "primary",
        "min_improvement",
        "at_checkpoints"
      ],
      "type": "object"
    },
    "lora": {
      "additionalProperties": false,
      "properties": {
        "alpha": {
          "exclusiveMinimum": 0,
          "type": "number"
        },
        "bias": {
          "enum": [
            "none",
            "all",
            "lora_only"
          ],
          "type": "string"
        },
        "dropout": {
          "exclusiveMaximum": 1,
          "minimum": 0,
          "type": "number"
        },
        "r": {
          "maximum": 4096,
          "minimum": 1,
          "type": "integer"
        },
        "target_modules": {
          "description": "a non-empty list of module names or \"all-linear\"",
          "oneOf": [
            {
              "const": "all-linear"
            },
            {
              "items": {
                "minLength": 1,
                "type": "string"
              },
              "minItems": 1,
              "type": "array"
            }
          ]
        },
        "use_dora": {
          "type": "boolean"
        },
        "use_rslora": {
          "type": "boolean"
        }
      },
      "required": [
        "r",
        "alpha",
        "dropout",
        "target_modules",
        "bias",
        "use_rslora",
        "use_dora"
      ],
      "type": "object"
    },
    "model": {
      "additionalProperties": false,
      "properties": {
        "name_or_path": {
          "description": "a model directory or hub id",
          "pattern": "\\S",
          "type": "string"
        },
        "revision": {
          "type": "string"
        },
        "trust_remote_code": {
          "type": "boolean"
        }
      },
      "required": [
        "name_or_path",
        "revision",
        "trust_remote_code"
      ],
      "type": "object"
    },
    "name": {
      "type": "string"
    },
    "quantization": {
      "additionalProperties": false,
      "properties": {
        "double_quant": {
          "type": "boolean"
        },
        "mode": {
          "enum": [
            "none",
            "4bit",
            "8bit"
          ],
          "type": "string"
        },
        "quant_type": {
          "enum": [
            "nf4",
            "fp4"
          ],
          "type": "string"
        }
      },
      "required": [
        "mode",
        "quant_type",
        "double_quant"
      ],
      "type": "object"
    },
    "train": {
      "additionalProperties": false,
      "properties": {
        "assistant_only_loss": {
          "enum": [
            true,
            false,
            "auto"
          ]
        },
        "attn_implementation": {
          "enum": [
            "auto",
            "sdpa",
            "flash_attention_2",
            "eager"
          ],
          "type": "string"
        },
        "batch_size": {
          "maximum": 1048576,
          "minimum": 1,
          "type": "integer"
        },
        "batch_size_auto": {
          "type": "boolean"
        },
        "early_stopping_patience": {
          "maximum": 1048576,
          "minimum": 0,
          "type": "integer"
        },
        "effective_batch_size": {
          "maximum": 1048576,
          "minimum": 1,
          "type": "integer"
        },
        "effective_batch_size_set": {
          "type": "boolean"
        },
        "epochs": {
          "exclusiveMinimum": 0,
          "type": "number"
        },
        "eval_batch_size": {
          "maximum": 1048576,
          "minimum": 1,
          "type": "integer"
        },
        "eval_steps": {
          "minimum": 0,
          "type": "integer"
        },
        "grad_accum": {
          "maximum": 1048576,
          "minimum": 1,
          "type": "integer"
        },
        "gradient_checkpointing": {
          "type": "boolean"
        },
        "learning_rate": {
          "exclusiveMaximum": 1,
          "exclusiveMinimum": 0,
          "type": "number"
        },
        "liger": {
          "enum": [
            true,
            false,
            "auto"
          ]
        },
        "logging_steps": {
          "maximum": 1048576,
          "minimum": 1,
          "type": "integer"
        },
        "loss_type": {
          "enum": [
            "nll",
            "dft",
            "chunked_nll"
          ],
          "type": "string"
        },
        "max_grad_norm": {
          "minimum": 0,
          "type": "number"
        },
        "max_length": {
          "maximum": 1048576,
          "minimum": 1,
          "type": "integer"
        },
        "max_steps": {
          "description": "-1 (not set) or a step count from 1",
          "maximum": 1048576,
          "minimum": -1,
          "not": {
            "const": 0
          },
          "type": "integer"
        },
        "optim": {
          "enum": [
            "adamw_torch",
            "adamw_torch_fused",
            "adamw_8bit",
            "paged_adamw_8bit",
            "paged_adamw_32bit",
            "adafactor",
            "sgd"
          ],
          "type": "string"
        },
        "packing": {
          "type": "boolean"
        },
        "padding_free": {
          "enum": [
            true,
            false,
            "auto"
          ]
        },
        "precision": {
          "enum": [
            "auto",
            "bf16",
            "fp16",
            "fp32"
          ],
          "type": "string"
        },
        "report_to": {
          "items": {
            "enum": [
              "tensorboard",
              "mlflow",
              "wandb"
            ]
          },
          "type": "array",
          "uniqueItems": true
        },
        "save_steps": {
          "minimum": 0,
          "type": "integer"
        },
        "save_total_limit": {
          "minimum": 0,
          "type": "integer"
        },
        "scheduler": {
          "enum": [
            "linear",
            "cosine",
            "cosine_with_restarts",
            "polynomial",
            "constant",
            "constant_with_warmup",
            "inverse_sqrt"
          ],
          "type": "string"
        },
        "seed": {
          "maximum": 4294967295,
          "minimum": 0,
          "type": "integer"
        },
        "select": {
          "enum": [
            "last",
            "best"
          ],
          "type": "string"
        },
        "warmup": {
          "minimum": 0,
          "type": "number"
        },
        "weight_decay": {
          "minimum": 0,
          "type": "number"
        }
      },
      "required": [
        "epochs",
        "max_steps",
        "learning_rate",
        "batch_size",
        "eval_batch_size",
        "grad_accum",
        "max_length",
        "warmup",
        "scheduler",
        "seed",
        "gradient_checkpointing",
        "packing",
        "assistant_only_loss",
        "logging_steps",
        "eval_steps",
        "save_steps",
        "save_total_limit",
        "precision",
        "weight_decay",
        "max_grad_norm",
        "optim",
        "loss_type",
        "select",
        "early_stopping_patience",
        "batch_size_auto",
        "effective_batch_size",
        "attn_implementation",
        "padding_free",
        "liger"
      ],
      "type": "object"
    },
    "version": {
      "const": 1
    }
  },
  "required": [
    "version",
    "name",
    "model",
    "data",
    "lora",
    "quantization",
    "train",
    "eval"
  ],
  "title": "loractl resolved.json",
  "type": "object"
}
""")
