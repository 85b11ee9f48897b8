"""The tiny training run, as config overrides, for the tests that fit one: a ResNet-20 on 600 synthetic 16×16
images (100 of them for validation) in batches of 50, deterministic, with no warm-up and no progress bar."""

TINY = ["data.name=synthetic", "data.path=null", "data.val_size=100", "data.batch_size=50",
        "data.synthetic={num_train: 600, num_test: 100, image_size: 16}", "model.backbone=resnet20",
        "trainer.progress_bar=false", "trainer.deterministic=true", "optim.warmup_epochs=0"]
