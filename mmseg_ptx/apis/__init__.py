"""Helpers shared by the command-line tools in ``tools/``."""
from .cli import (MissingFileError, UsageError, add_cfg_options_arg,
                  add_runner_args, check_device, config_entries,
                  config_type_name, format_metrics_table, has_custom_hook,
                  launch_rank, leave_process_group, load_config,
                  loader_dataset, logs_to_stderr, merge_cfg_options,
                  read_config, reports_usage_errors, require_file,
                  require_folder, require_replaceable_json,
                  require_writable_file)
from .inference import (IMAGE_SUFFIXES, build_inference_pipeline,
                        build_postprocessor, default_device, draw_overlay,
                        evaluator_postprocess, find_images, image_reader,
                        load_models, mask_threshold_mismatch,
                        postprocess_mismatch, predict_packed,
                        predict_probabilities, read_image, write_submission)
from .pipelines import (config_test_pipeline, pipeline_difference,
                        pipeline_mismatch, tta_pipeline_difference,
                        val_pipeline_difference)

__all__ = [
    'add_cfg_options_arg', 'add_runner_args', 'check_device',
    'config_entries', 'config_type_name',
    'format_metrics_table', 'has_custom_hook', 'launch_rank',
    'leave_process_group', 'loader_dataset', 'logs_to_stderr',
    'load_config',
    'merge_cfg_options', 'read_config', 'reports_usage_errors', 'UsageError',
    'MissingFileError', 'require_file', 'require_folder',
    'require_replaceable_json', 'require_writable_file',
    'IMAGE_SUFFIXES',
    'build_inference_pipeline', 'build_postprocessor', 'default_device',
    'draw_overlay', 'evaluator_postprocess', 'find_images', 'image_reader',
    'load_models', 'mask_threshold_mismatch', 'postprocess_mismatch',
    'predict_packed',
    'predict_probabilities', 'read_image',
    'write_submission', 'pipeline_difference', 'pipeline_mismatch',
    'config_test_pipeline', 'tta_pipeline_difference',
    'val_pipeline_difference'
]
