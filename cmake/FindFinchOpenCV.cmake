# Finds the three OpenCV modules finch uses (core, imgproc, imgcodecs) without requiring
# Debian's meta package libopencv-dev (which pulls in every OpenCV module and ~1 GB).
find_path(FinchOpenCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4)
foreach(module core imgproc imgcodecs)
  find_library(FinchOpenCV_${module}_LIBRARY NAMES opencv_${module})
  list(APPEND FinchOpenCV_LIBRARIES ${FinchOpenCV_${module}_LIBRARY})
endforeach()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(FinchOpenCV REQUIRED_VARS FinchOpenCV_INCLUDE_DIR
  FinchOpenCV_core_LIBRARY FinchOpenCV_imgproc_LIBRARY FinchOpenCV_imgcodecs_LIBRARY)
if(FinchOpenCV_FOUND AND NOT TARGET FinchOpenCV::OpenCV)
  add_library(FinchOpenCV::OpenCV INTERFACE IMPORTED)
  set_target_properties(FinchOpenCV::OpenCV PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES ${FinchOpenCV_INCLUDE_DIR}
    INTERFACE_LINK_LIBRARIES "${FinchOpenCV_LIBRARIES}")
endif()
