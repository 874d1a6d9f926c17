# CPack's pre-build script: once the files are staged and before they are
# packaged, the binary's debug info goes to memlend-dbgsym and the binary is
# stripped (make-dbgsym.sh).
execute_process(
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/make-dbgsym.sh
          "${CPACK_TEMPORARY_INSTALL_DIRECTORY}${CPACK_PACKAGING_INSTALL_PREFIX}/bin/memlend"
          "${CPACK_PACKAGE_VERSION}" "${CPACK_PACKAGE_CONTACT}" "${CPACK_PACKAGE_DIRECTORY}"
  COMMAND_ERROR_IS_FATAL ANY)
