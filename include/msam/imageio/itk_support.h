// Marker for code that needs ITK: everything under msam/imageio/ is built only when ITK is.
#pragma once
