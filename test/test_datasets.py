"""datasets: every public name of its parts (recording, mat_datasets, column_files) is importable
from it; the parts' behaviour is tested in test_recording, test_mat_datasets and test_column_files."""
from invdyn_ros.offline import column_files, datasets, mat_datasets, recording


def test_the_parts_public_names_are_importable_from_datasets():
    for module in (recording, mat_datasets, column_files):
        for name in module.__all__:
            assert getattr(datasets, name) is getattr(module, name), name
    for name in datasets.__all__:
        assert hasattr(datasets, name), name
