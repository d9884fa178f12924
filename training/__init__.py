"""Training the car/boat classifier: CIFAR-10 data, canvases, the ResNet, export."""
